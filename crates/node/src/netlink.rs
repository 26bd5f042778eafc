//! Interfaces, addresses, routes and neighbours read from the kernel over rtnetlink.
