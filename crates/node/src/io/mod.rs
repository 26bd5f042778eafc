//! io backends: they move frames and know nothing of services.
