//! Inline cache (`--cache-to type=inline`): the cache config embedded in the pushed image's
//! own config, under [`INLINE_KEY`], naming the image's own layers. Only the final result's
//! chain fits there (mode=min), and nothing is pushed besides the image.

use serde_json::Value;

use crate::error::CacheError;
use crate::format::CacheConfig;

/// The image config field holding the cache config.
pub const INLINE_KEY: &str = "img.cache.v1";

/// Adds `cache` to `image_config` (a JSON object; anything else is left alone).
pub fn embed(image_config: &mut Value, cache: &CacheConfig) {
    if let Value::Object(map) = image_config {
        // Plain data always serializes.
        let value = serde_json::to_value(cache).unwrap_or(Value::Null);
        map.insert(INLINE_KEY.to_owned(), value);
    }
}

/// The cache config embedded in the image config `bytes` read from `location`; `Ok(None)`
/// when the image carries none.
pub fn extract(location: &str, bytes: &[u8]) -> Result<Option<CacheConfig>, CacheError> {
    let config: Value = serde_json::from_slice(bytes).map_err(|e| CacheError::Malformed {
        location: location.to_owned(),
        problem: format!("image config: {e}"),
    })?;
    let Some(inline) = config.get(INLINE_KEY) else {
        return Ok(None);
    };
    let bytes = serde_json::to_vec(inline).unwrap_or_default();
    CacheConfig::from_bytes(location, &bytes).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{CacheBuilder, CacheLayer};

    #[test]
    fn embedded_config_is_extracted_and_absent_one_is_none() {
        let d = img_registry::sha256_digest(b"layer");
        let mut b = CacheBuilder::new();
        b.add_record("sha256:k", &[CacheLayer::new(d.clone(), 5, "t", d)]);
        let cache = b.build();
        let mut config = serde_json::json!({"architecture": "amd64", "os": "linux"});
        embed(&mut config, &cache);
        let bytes = serde_json::to_vec(&config).unwrap();
        assert_eq!(extract("img", &bytes).unwrap(), Some(cache));
        assert_eq!(extract("img", br#"{"os": "linux"}"#).unwrap(), None);
    }
}
