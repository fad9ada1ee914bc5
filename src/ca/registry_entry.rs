//! A client's registry entry as the CA writes it (`issue-client`,
//! `register-key`): public data only, and the tier check for it.

use time::OffsetDateTime;

use super::error::CaError;
use super::validity::rfc3339;
use crate::identity::ClientId;

/// What the registry entry of an issued client says beyond its tools.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryOptions<'a> {
    /// The tier the entry names (`[tier.NAME]` in the gateway config).
    pub tier: Option<&'a str>,
    /// Whether the client may call the admin service.
    pub admin: bool,
}

/// Refuses a tier name the gateway config could not have.
pub(super) fn check_tier(options: &EntryOptions<'_>) -> Result<(), CaError> {
    if let Some(t) = options.tier {
        let ok = !t.is_empty()
            && t.len() <= 64
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !ok {
            return Err(CaError::Invalid(format!(
                "tier {t:?}: 1-64 characters of [A-Za-z0-9_-]"
            )));
        }
    }
    Ok(())
}

/// A client's registry entry (`[[client]]` and one `[[client.key]]`):
/// public data only. `issue-client` and `register-key` both write it.
pub(super) fn registry_entry(
    id: &ClientId,
    tools: &[String],
    options: &EntryOptions<'_>,
    key_id: &str,
    public_key: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<String, CaError> {
    let not_before = rfc3339(not_before)?;
    let not_after = rfc3339(not_after)?;
    let tool_list: Vec<String> = tools.iter().map(|t| format!("{t:?}")).collect();
    let mut policy = String::new();
    if let Some(t) = options.tier {
        policy.push_str(&format!(
            "# Its policy starts from [tier.{t}] in the gateway config.\ntier = \"{t}\"\n"
        ));
    }
    if options.admin {
        policy.push_str("# May list and lift anomaly blocks (sealgate admin).\nadmin = true\n");
    }
    if options.tier.is_none() || !tools.is_empty() {
        if options.tier.is_none() {
            policy.push_str("methods = [\"initialize\", \"ping\", \"tools/list\", \"tools/call\", \"notifications/initialized\", \"notifications/cancelled\"]\n");
        }
        policy.push_str(&format!(
            "# The tools this client may call (names or globs); an empty list allows none.\ntools = [{}]\n",
            tool_list.join(", ")
        ));
    }
    Ok(format!(
        "# Registry entry for client {id}: append to the gateway's client registry.\n\
         [[client]]\n\
         id = \"{id}\"\n\
         enabled = true\n\
         {policy}\
         \n\
         [[client.key]]\n\
         id = \"{key_id}\"\n\
         public_key = \"{public_key}\"\n\
         not_before = \"{not_before}\"\n\
         not_after = \"{not_after}\"\n"
    ))
}
