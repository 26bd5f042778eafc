//! rvs control plane: the API spoken over the daemon socket (`api`, `http`,
//! `client`) and the ipvsadm-compatible command-line logic (`ipvsadm`).

pub mod api;
pub mod client;
pub mod http;
pub mod ipvsadm;
