//! The registry client handle.

use crate::config::ClientConfig;
use crate::transport::Transport;

/// A registry client: connections, discovered endpoints, credentials and tokens are shared by
/// every operation made through it (and across threads: it is `Sync`).
///
/// Operations: [`fetch_manifest`](Client::fetch_manifest), [`resolve`](Client::resolve),
/// [`fetch_blob`](Client::fetch_blob), [`pull`](Client::pull) and [`push`](Client::push);
/// for one blob at a time [`blob_exists`](Client::blob_exists),
/// [`mount_blob`](Client::mount_blob) and [`push_blob`](Client::push_blob).
pub struct Client {
    pub(crate) transport: Transport,
}

impl Client {
    /// A client with the given configuration. Nothing is contacted until first use.
    pub fn new(config: ClientConfig) -> Self {
        Client {
            transport: Transport::new(config),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ClientConfig {
        &self.transport.config
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.transport.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn client_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<super::Client>();
    }
}
