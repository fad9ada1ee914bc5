//! The URI schemes the primary backend offers its resources under.
//!
//! Every resource URI has a scheme (`ep://meps/{id}`), so the sanitizer's
//! rule for identifier fields (no scheme) cannot apply to a
//! `resources/read` URI. Instead the gateway forwards only URIs whose
//! scheme the backend itself offered in `resources/list` or
//! `resources/templates/list`, compared after parsing and in lower case:
//! a client cannot make the backend read a `file:` or `http:` URI it never
//! offered. The offer is listed once per backend generation (again after a
//! restart or a new session).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Backend, BackendError, Reply};
pub use crate::policy::sanitize::scheme_of;

/// At most this many pages of each listing are read.
const MAX_PAGES: usize = 16;
/// At most this many distinct schemes are kept.
const MAX_SCHEMES: usize = 64;

/// The schemes offered, cached per backend generation.
#[derive(Default)]
pub struct ResourceSchemes {
    /// (generation, schemes); one listing at a time.
    cache: tokio::sync::Mutex<Option<(u64, Arc<BTreeSet<String>>)>>,
}

impl ResourceSchemes {
    /// The lower-case schemes `backend` offers resources under, listed
    /// again whenever the backend's generation changed. A listing method
    /// the backend does not implement offers nothing.
    pub async fn offered(
        &self,
        backend: &dyn Backend,
        timeout: Duration,
    ) -> Result<Arc<BTreeSet<String>>, BackendError> {
        let generation = *backend.generation().borrow();
        let mut cache = self.cache.lock().await;
        if let Some((g, set)) = cache.as_ref() {
            if *g == generation {
                return Ok(set.clone());
            }
        }
        let mut set = BTreeSet::new();
        for (method, member, field) in [
            ("resources/list", "resources", "uri"),
            (
                "resources/templates/list",
                "resourceTemplates",
                "uriTemplate",
            ),
        ] {
            let mut cursor: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let params = match &cursor {
                    Some(c) => json!({ "cursor": c }),
                    None => json!({}),
                };
                let Reply::Result(page) = backend.request(method, params, timeout).await? else {
                    break;
                };
                let items = page.get(member).and_then(Value::as_array);
                for uri in items
                    .into_iter()
                    .flatten()
                    .filter_map(|item| item.get(field).and_then(Value::as_str))
                {
                    if let Some(s) = scheme_of(uri) {
                        if set.len() < MAX_SCHEMES {
                            set.insert(s);
                        }
                    }
                }
                cursor = page
                    .get("nextCursor")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                if cursor.is_none() {
                    break;
                }
            }
        }
        let set = Arc::new(set);
        *cache = Some((generation, set.clone()));
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_are_parsed_and_lowered() {
        assert_eq!(scheme_of("ep://meps/{mepId}").as_deref(), Some("ep"));
        assert_eq!(scheme_of("FILE:///etc/passwd").as_deref(), Some("file"));
        assert_eq!(scheme_of("a+b.c-d:x").as_deref(), Some("a+b.c-d"));
        assert_eq!(scheme_of("no-scheme"), None);
        assert_eq!(scheme_of("1ep://x"), None);
        assert_eq!(scheme_of(":x"), None);
        assert_eq!(scheme_of("e p://x"), None);
    }

    #[tokio::test]
    async fn the_offer_comes_from_both_listings_of_the_current_generation() {
        struct Offers {
            generation: tokio::sync::watch::Sender<u64>,
            calls: std::sync::atomic::AtomicU32,
        }
        #[tonic::async_trait]
        impl Backend for Offers {
            fn name(&self) -> &str {
                "offers"
            }
            async fn request(
                &self,
                method: &str,
                params: Value,
                _t: Duration,
            ) -> Result<Reply, BackendError> {
                self.calls
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(
                    match (method, params.get("cursor").and_then(Value::as_str)) {
                        ("resources/list", None) => Reply::Result(
                            json!({"resources": [{"uri": "Note://a"}], "nextCursor": "2"}),
                        ),
                        ("resources/list", Some("2")) => {
                            Reply::Result(json!({"resources": [{"uri": "https://example.test/x"}]}))
                        }
                        ("resources/templates/list", _) => {
                            Reply::Error(json!({"code": -32601, "message": "Method not found"}))
                        }
                        _ => return Err(BackendError::Protocol),
                    },
                )
            }
            fn generation(&self) -> tokio::sync::watch::Receiver<u64> {
                self.generation.subscribe()
            }
            fn messages_received(&self) -> u64 {
                0
            }
        }
        let b = Offers {
            generation: tokio::sync::watch::Sender::new(1),
            calls: Default::default(),
        };
        let schemes = ResourceSchemes::default();
        let got = schemes
            .offered(&b, Duration::from_secs(1))
            .await
            .expect("listed");
        assert_eq!(
            got.iter().map(String::as_str).collect::<Vec<_>>(),
            ["https", "note"]
        );
        let calls = b.calls.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(calls, 3);
        // Cached for this generation; listed again for the next.
        schemes
            .offered(&b, Duration::from_secs(1))
            .await
            .expect("cached");
        assert_eq!(b.calls.load(std::sync::atomic::Ordering::Relaxed), calls);
        b.generation.send_replace(2);
        schemes
            .offered(&b, Duration::from_secs(1))
            .await
            .expect("listed");
        assert_eq!(
            b.calls.load(std::sync::atomic::Ordering::Relaxed),
            2 * calls
        );
    }
}
