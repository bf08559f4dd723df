//! Network layer: listening sockets and the byte buffers of one client socket.
//! Nothing here knows AMQP.

pub mod accept;
pub mod listener;
pub mod socket;
pub mod tls;

pub use listener::bind_reuseport;
pub use socket::{ReadOutcome, Socket};
