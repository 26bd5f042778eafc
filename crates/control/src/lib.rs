//! rvs control plane: the API spoken over the daemon socket (`api`, `http`,
//! `client`), the rvs extensions to it (`ops`) and the ipvsadm-compatible command-line logic (`ipvsadm`).

pub mod api;
pub mod client;
pub mod http;
pub mod ipvsadm;
pub mod ops;
pub mod sysctl;
pub mod token;
