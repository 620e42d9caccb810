//! The Tag service's `ModifyResourceTags` (2018-08-13) for CLBs: the only way to change the tags
//! of an existing CLB (no CLB action does). Checked as the Tag service documents it: a
//! six-segment resource description of a CLB of this region, at most 10 tags per call, keys of
//! 1-127 and values of 1-255 allowed characters, reserved key prefixes, at most 50 tags on a
//! resource; the change is synchronous.

use serde_json::Value;

use super::common::{Handled, reply};
use crate::core::Core;
use crate::error::{ApiFailure, codes};
use clb_api::types::TagInfo;

/// Tags per ModifyResourceTags list (`ReplaceTags`, `DeleteTags`).
pub const MAX_TAGS_PER_REQUEST: usize = 10;
/// Tags one resource may carry.
pub const MAX_TAGS_PER_RESOURCE: usize = 50;
/// Tag key length (characters).
pub const MAX_KEY_CHARS: usize = 127;
/// Tag value length (characters).
pub const MAX_VALUE_CHARS: usize = 255;
/// Key prefixes reserved for Tencent Cloud (case-insensitive).
pub const RESERVED_KEY_PREFIXES: &[&str] = &["qcloud", "tencent", "project"];
/// Characters besides letters and digits a key or value may hold.
const EXTRA_CHARS: &str = "+-=._:/@()[]（）【】";

fn fail(code: &str, message: impl Into<String>) -> ApiFailure {
    ApiFailure::new(code, message.into())
}

/// Handle a Tag service action (only `ModifyResourceTags` is served).
pub fn handle_tag(core: &mut Core, action: &str, body: &[u8]) -> Handled {
    if action != "ModifyResourceTags" {
        return Err(fail(
            codes::INVALID_ACTION,
            format!("The action `{action}` does not exist."),
        ));
    }
    let req: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            fail(
                codes::INVALID_PARAMETER,
                format!("The request body is not a JSON object: {e}"),
            )
        })?
    };
    let resource = req
        .get("Resource")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiFailure::missing("Resource"))?;
    let lb_id = clb_of(core, resource)?;
    let replace = tag_list(&req, "ReplaceTags", true)?;
    let delete = tag_list(&req, "DeleteTags", false)?;
    if replace.is_none() && delete.is_none() {
        return Err(ApiFailure::missing("ReplaceTags"));
    }
    let replace = replace.unwrap_or_default();
    let delete: Vec<String> = delete
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.0)
        .collect();
    for (k, _) in &replace {
        if delete.contains(k) {
            return Err(fail(
                "InvalidParameterValue.DeleteTagsParamError",
                format!("The tag key `{k}` is in both ReplaceTags and DeleteTags."),
            ));
        }
    }
    let lb = core
        .state
        .lb_mut(&lb_id)
        .ok_or_else(|| resource_id_invalid(resource))?;
    for k in &delete {
        if !lb.tags.iter().any(|t| &t.tag_key == k) {
            return Err(fail(
                "ResourceNotFound.AttachedTagKeyNotFound",
                format!("The tag key `{k}` is not attached to {resource}."),
            ));
        }
    }
    lb.tags.retain(|t| !delete.contains(&t.tag_key));
    for (k, v) in replace {
        match lb.tags.iter_mut().find(|t| t.tag_key == k) {
            Some(t) => t.tag_value = v,
            None => lb.tags.push(TagInfo {
                tag_key: k,
                tag_value: v,
            }),
        }
    }
    if lb.tags.len() > MAX_TAGS_PER_RESOURCE {
        return Err(fail(
            "LimitExceeded.ResourceAttachedTags",
            format!("A resource carries at most {MAX_TAGS_PER_RESOURCE} tags."),
        ));
    }
    reply(&serde_json::json!({}), vec![])
}

fn resource_id_invalid(resource: &str) -> ApiFailure {
    fail(
        "InvalidParameterValue.ResourceIdInvalid",
        format!("The resource `{resource}` does not exist."),
    )
}

/// The CLB id of `qcs::clb:<region>:uin/<account>:clb/<lb-id>` (the account may be empty: the
/// caller's own), checked against this region's CLBs.
fn clb_of(core: &Core, resource: &str) -> Result<String, ApiFailure> {
    let parts: Vec<&str> = resource.split(':').collect();
    let malformed = || {
        fail(
            "InvalidParameterValue.ResourceDescriptionError",
            format!(
                "The resource description `{resource}` is not of the form qcs::<service>:<region>:uin/<account>:<prefix>/<id>."
            ),
        )
    };
    let [qcs, empty, service, region, account, last] = parts[..] else {
        return Err(malformed());
    };
    if qcs != "qcs" || !empty.is_empty() {
        return Err(malformed());
    }
    if service != "clb" {
        return Err(fail(
            "InvalidParameterValue.ServiceTypeInvalid",
            format!("The service type `{service}` is not served here (clb)."),
        ));
    }
    if region != core.settings.region {
        return Err(fail(
            "InvalidParameterValue.RegionInvalid",
            format!(
                "The region `{region}` is not served by this emulator (it serves {}).",
                core.settings.region
            ),
        ));
    }
    let uin = account.strip_prefix("uin/").ok_or_else(malformed)?;
    if !uin.chars().all(|c| c.is_ascii_digit()) {
        return Err(fail(
            "InvalidParameterValue.UinInvalid",
            format!("The account `{uin}` is not a uin."),
        ));
    }
    let (prefix, id) = last.split_once('/').ok_or_else(malformed)?;
    if prefix != "clb" {
        return Err(fail(
            "InvalidParameterValue.ResourcePrefixInvalid",
            format!("The resource prefix `{prefix}` is not a CLB's (clb)."),
        ));
    }
    if core.state.lb(id).is_none() {
        return Err(resource_id_invalid(resource));
    }
    Ok(id.to_string())
}

/// The `(key, value)` pairs of the tag list `field` (values only when `with_values`): None
/// when absent; refused when empty, too long, repeated or malformed.
fn tag_list(
    req: &Value,
    field: &str,
    with_values: bool,
) -> Result<Option<Vec<(String, String)>>, ApiFailure> {
    let items = match req.get(field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(fail(
                codes::INVALID_PARAMETER,
                format!("The value type of parameter `{field}` is not valid: expected array."),
            ));
        }
    };
    if items.is_empty() {
        return Err(fail(
            codes::INVALID_PARAMETER_VALUE,
            format!("`{field}` may be omitted but not empty."),
        ));
    }
    if items.len() > MAX_TAGS_PER_REQUEST {
        return Err(fail(
            "LimitExceeded.TagNumPerRequest",
            format!("`{field}` holds at most {MAX_TAGS_PER_REQUEST} tags."),
        ));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let key = item
            .get("TagKey")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiFailure::missing(&format!("{field}.{i}.TagKey")))?;
        check_text(key, MAX_KEY_CHARS, "Key")?;
        if RESERVED_KEY_PREFIXES
            .iter()
            .any(|p| key.to_lowercase().starts_with(p))
        {
            return Err(fail(
                "InvalidParameterValue.ReservedTagKey",
                format!("The tag key `{key}` starts with a reserved prefix."),
            ));
        }
        let value = if with_values {
            let v = item
                .get("TagValue")
                .and_then(Value::as_str)
                .ok_or_else(|| ApiFailure::missing(&format!("{field}.{i}.TagValue")))?;
            check_text(v, MAX_VALUE_CHARS, "Value")?;
            v.to_string()
        } else {
            String::new()
        };
        if out.iter().any(|(k, _)| k == key) {
            return Err(fail(
                "InvalidParameterValue.TagKeyDuplicate",
                format!("The tag key `{key}` is repeated in `{field}`."),
            ));
        }
        out.push((key.to_string(), value));
    }
    Ok(Some(out))
}

/// A tag key (`what` = "Key") or value ("Value"): 1..=`max` characters, letters, digits and
/// `+ - = . _ : / @ ( ) [ ]` (and their full-width forms).
fn check_text(text: &str, max: usize, what: &str) -> Result<(), ApiFailure> {
    if text.is_empty() {
        return Err(fail(
            &format!("InvalidParameterValue.Tag{what}Empty"),
            format!("A tag {} is empty.", what.to_lowercase()),
        ));
    }
    if text.chars().count() > max {
        return Err(fail(
            &format!("InvalidParameterValue.Tag{what}LengthExceeded"),
            format!(
                "The tag {} `{text}` is longer than {max} characters.",
                what.to_lowercase()
            ),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_alphanumeric() || EXTRA_CHARS.contains(*c)))
    {
        return Err(fail(
            &format!("InvalidParameterValue.Tag{what}CharacterIllegal"),
            format!(
                "The tag {} `{text}` holds the character {c:?}, which is not allowed.",
                what.to_lowercase()
            ),
        ));
    }
    Ok(())
}
