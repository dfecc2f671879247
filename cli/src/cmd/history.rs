//! `tcodec history check` and `tcodec history decode`: a workflow history as
//! the Temporal server stores it (`temporal workflow show --output json`,
//! `temporal workflow describe --output json`), audited for plaintext or
//! decoded whole.
//!
//! Payloads are found by shape, wherever the history holds them: an object
//! whose `metadata` has an `encoding` and whose other fields are `data` and
//! `externalPayloads`. The `temporal` CLI prints some json/plain payloads as
//! their JSON value (memo fields in `describe`): anything in a `payloads`
//! array or a `fields` map that is not a payload is such a value, so plaintext.
//! Failures are objects with a `…FailureInfo` or `encodedAttributes` field.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use serde_json::{Map, Value, json};
use tcodec::Payload;
use tcodec::storage::s3::S3Store;
use tcodec::storage::{Reference, is_reference};
use tcodec::wire::{ENCODING, HeaderView, METADATA_KEY_ID};
use tcodec_json::Direction;

use crate::cli::{CodecInput, HistoryCheckArgs, HistoryCommand};

/// The message a failure carries when an SDK's failure converter has moved
/// its message and stack trace into `encodedAttributes`.
const ENCODED_FAILURE: &str = "Encoded failure";

/// Exit status: every payload and failure message is sealed.
const SEALED: u8 = 0;
/// Exit status: something the server holds is plaintext, or cannot be shown
/// not to be.
const PLAINTEXT: u8 = 1;
/// Exit status: the history could not be read or checked.
const TROUBLE: u8 = 2;

pub fn run(command: HistoryCommand) -> ExitCode {
    let result = match command {
        HistoryCommand::Check(args) => check(&args),
        HistoryCommand::Decode(args) => decode(&args).map(|()| SEALED),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("tcodec: error: {e:#}");
            ExitCode::from(TROUBLE)
        }
    }
}

fn read_input(file: Option<&Path>) -> anyhow::Result<Value> {
    let input = super::codec::read_all(file)?;
    // serde's messages for a value of the wrong type quote it; a syntax error
    // names only where it is.
    serde_json::from_slice(&input).map_err(|e| {
        anyhow::anyhow!(
            "the input is not JSON (as `temporal workflow show --output json` prints a history): \
             line {} column {}",
            e.line(),
            e.column()
        )
    })
}

/// Where something is in the history: the event (when the input is a
/// history) and the field path within it.
#[derive(Debug, Clone)]
struct Place {
    event: Option<(String, String)>,
    path: String,
    pointer: String,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((id, kind)) = &self.event {
            write!(f, "event {id} ({kind}) ")?;
        }
        f.write_str(&self.path)
    }
}

/// What the walk found at a place.
enum Found<'a> {
    /// A payload as the server stores it.
    Payload(&'a Map<String, Value>),
    /// A value where a payload belongs: the CLI's JSON shorthand of a
    /// json/plain payload.
    Shorthand,
    /// A search attribute: plaintext by design, the server indexes it.
    SearchAttribute,
    /// A failure (its message and stack trace; its payloads are found apart).
    Failure(&'a Map<String, Value>),
}

fn is_payload(map: &Map<String, Value>) -> bool {
    map.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| m.get("encoding").is_some_and(Value::is_string))
        && map
            .keys()
            .all(|k| matches!(k.as_str(), "metadata" | "data" | "externalPayloads"))
}

fn is_failure(map: &Map<String, Value>) -> bool {
    map.contains_key("encodedAttributes") || map.keys().any(|k| k.ends_with("FailureInfo"))
}

/// Every payload, shorthand value, search attribute and failure in `root`,
/// in document order.
fn walk(root: &Value) -> Vec<(Place, Found<'_>)> {
    let mut out = Vec::new();
    let top = Place {
        event: None,
        path: String::new(),
        pointer: String::new(),
    };
    visit(root, &top, None, &mut out);
    out
}

fn child(place: &Place, key: &str, index: Option<usize>) -> Place {
    let mut next = place.clone();
    let token = match index {
        Some(i) => i.to_string(),
        None => key.replace('~', "~0").replace('/', "~1"),
    };
    next.pointer.push('/');
    next.pointer.push_str(&token);
    match index {
        Some(i) => {
            let _ = write!(next.path, "[{i}]");
        }
        None => {
            if !next.path.is_empty() {
                next.path.push('.');
            }
            next.path.extend(key.escape_debug());
        }
    }
    next
}

fn visit<'a>(
    value: &'a Value,
    place: &Place,
    parent: Option<&str>,
    out: &mut Vec<(Place, Found<'a>)>,
) {
    match value {
        Value::Object(map) => {
            if is_payload(map) {
                out.push((place.clone(), Found::Payload(map)));
                return;
            }
            if is_failure(map) {
                out.push((place.clone(), Found::Failure(map)));
            }
            for (key, v) in map {
                let next = child(place, key, None);
                match key.as_str() {
                    // A search attributes map: plaintext by design.
                    "indexedFields" => {
                        if let Some(fields) = v.as_object() {
                            for name in fields.keys() {
                                out.push((child(&next, name, None), Found::SearchAttribute));
                            }
                        }
                        continue;
                    }
                    // A memo's or header's map of payloads.
                    "fields" => {
                        if let Some(fields) = v.as_object() {
                            for (name, field) in fields {
                                let at = child(&next, name, None);
                                match field.as_object() {
                                    Some(m) if is_payload(m) => out.push((at, Found::Payload(m))),
                                    _ => out.push((at, Found::Shorthand)),
                                }
                            }
                            continue;
                        }
                    }
                    _ => {}
                }
                visit(v, &next, Some(key), out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let at = child(place, "", Some(i));
                if parent == Some("payloads") {
                    match item.as_object() {
                        Some(m) if is_payload(m) => out.push((at, Found::Payload(m))),
                        _ => out.push((at, Found::Shorthand)),
                    }
                } else if parent == Some("events") && place.event.is_none() {
                    // An event of a history: what is found in it is named
                    // by the event and the path within it.
                    let id = item.get("eventId").and_then(Value::as_str);
                    let kind = item.get("eventType").and_then(Value::as_str);
                    let at = Place {
                        event: Some((
                            id.unwrap_or("?").escape_debug().to_string(),
                            kind.unwrap_or("?")
                                .trim_start_matches("EVENT_TYPE_")
                                .escape_debug()
                                .to_string(),
                        )),
                        path: String::new(),
                        pointer: at.pointer,
                    };
                    visit(item, &at, None, out);
                } else {
                    visit(item, &at, None, out);
                }
            }
        }
        _ => {}
    }
}

/// A payload object of the history, read into a [`Payload`].
fn parse_payload(map: &Map<String, Value>) -> Result<Payload, String> {
    let b64 = |s: &str| {
        let t = s.trim_end_matches('=');
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
    };
    let mut payload = Payload::default();
    if let Some(metadata) = map.get("metadata").and_then(Value::as_object) {
        for (k, v) in metadata {
            let bytes = v
                .as_str()
                .and_then(|s| b64(s).ok())
                .ok_or_else(|| format!("metadata {:?} is not base64", k))?;
            payload.metadata.insert(k.clone(), bytes);
        }
    }
    if let Some(data) = map.get("data") {
        let bytes = data
            .as_str()
            .and_then(|s| b64(s).ok())
            .ok_or("data is not base64")?;
        payload.data = bytes.into();
    }
    if let Some(external) = map.get("externalPayloads").and_then(Value::as_array) {
        for e in external {
            let size = match e.get("sizeBytes") {
                Some(Value::String(s)) => s.parse().ok(),
                Some(Value::Number(n)) => n.as_i64(),
                None => Some(0),
                _ => None,
            }
            .ok_or("externalPayloads sizeBytes is not an integer")?;
            payload
                .external_payloads
                .push(tcodec::ExternalPayloadDetails { size_bytes: size });
        }
    }
    Ok(payload)
}

/// What a payload the server holds is.
enum Verdict {
    /// Sealed by tcodec (or a legacy encrypted format), under this key.
    Sealed { format: String, key: String },
    /// An External Storage reference.
    Reference(Reference),
    /// Not sealed: its encoding.
    Plain(String),
    /// Claims a sealed format but is not one.
    Broken(String),
}

fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

fn classify(payload: &Payload) -> Verdict {
    let meta = || {
        payload
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
    };
    let encoding = payload.encoding().unwrap_or_default();
    if encoding == ENCODING.as_bytes() {
        return match HeaderView::parse(&payload.data) {
            Err(e) => Verdict::Broken(format!("binary/tcodec whose data is not sealed: {e}")),
            Ok((header, _)) => {
                let named = payload.metadata.get(METADATA_KEY_ID).map(Vec::as_slice);
                if named != Some(header.key_id.as_bytes()) {
                    Verdict::Broken(
                        "binary/tcodec whose tcodec-key-id is not its header's key id".to_owned(),
                    )
                } else {
                    Verdict::Sealed {
                        format: ENCODING.to_owned(),
                        key: header.key_id.to_owned(),
                    }
                }
            }
        };
    }
    if is_reference(meta()) {
        return match Reference::parse(0, meta(), &payload.data, &payload.external_payloads) {
            Ok(r) => Verdict::Reference(r),
            Err(e) => Verdict::Broken(format!("an External Storage reference that {e}")),
        };
    }
    if encoding == tcodec::legacy::ENCODING_ENCRYPTED.as_bytes() {
        let key = payload
            .metadata
            .get(tcodec::legacy::METADATA_KEY_ID)
            .map(|k| shown(k))
            .unwrap_or_default();
        return Verdict::Sealed {
            format: tcodec::legacy::ENCODING_ENCRYPTED.to_owned(),
            key,
        };
    }
    Verdict::Plain(shown(encoding))
}

/// What of a failure is in plaintext (its message, its stack trace), if
/// anything. As the workers' failure converter judges it: an application
/// failure (or one of no kind) must carry its message and stack trace in
/// encoded attributes; what Temporal writes itself (timeouts, cancellations,
/// terminations, server errors, resets, the activity, child workflow and
/// Nexus wrappers) carries Temporal's own words and is not counted.
fn failure_problem(failure: &Map<String, Value>) -> Option<String> {
    let message = failure.get("message").and_then(Value::as_str).unwrap_or("");
    let stack = failure
        .get("stackTrace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = failure.keys().find(|k| k.ends_with("FailureInfo"));
    let (plain_message, plain_stack, what) = if failure.contains_key("encodedAttributes") {
        (
            !message.is_empty() && message != ENCODED_FAILURE,
            !stack.is_empty(),
            "beside its encoded attributes".to_owned(),
        )
    } else {
        let what = match kind.map(String::as_str) {
            None => "a failure of no kind".to_owned(),
            Some("applicationFailureInfo") => {
                let kind = failure
                    .get("applicationFailureInfo")
                    .and_then(|i| i.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                format!("an application failure of type {:?}", kind)
            }
            Some(_) => return None,
        };
        (
            !message.is_empty(),
            !stack.is_empty(),
            format!("{what}, no encoded attributes"),
        )
    };
    let parts = match (plain_message, plain_stack) {
        (true, true) => "message and stack trace",
        (true, false) => "message",
        (false, true) => "stack trace",
        (false, false) => return None,
    };
    Some(format!("a failure {parts} in plaintext ({what})"))
}

/// The check's findings.
#[derive(Default)]
struct Report {
    payloads: usize,
    /// format -> key -> count
    sealed: BTreeMap<String, BTreeMap<String, usize>>,
    stored: usize,
    stored_checked: usize,
    failures: usize,
    failures_encoded: usize,
    failures_by_temporal: usize,
    search_attributes: Vec<String>,
    plaintext: Vec<(Place, String)>,
    unchecked: Vec<(Place, String)>,
}

/// What `history` holds, and the External Storage references in it (not
/// followed yet).
fn audit(history: &Value) -> (Report, Vec<(Place, Reference)>) {
    let mut report = Report::default();
    let mut references = Vec::new();
    for (place, item) in walk(history) {
        match item {
            Found::SearchAttribute => report.search_attributes.push(place.to_string()),
            Found::Shorthand => {
                report.payloads += 1;
                report.plaintext.push((
                    place,
                    "a value printed as JSON: a json/plain payload (the temporal CLI shows those \
                     in shorthand)"
                        .to_owned(),
                ));
            }
            Found::Failure(failure) => {
                report.failures += 1;
                if failure.contains_key("encodedAttributes") {
                    report.failures_encoded += 1;
                }
                match failure_problem(failure) {
                    Some(problem) => report.plaintext.push((place, problem)),
                    None if !failure.contains_key("encodedAttributes") => {
                        report.failures_by_temporal += 1
                    }
                    None => {}
                }
            }
            Found::Payload(map) => {
                report.payloads += 1;
                match parse_payload(map) {
                    Ok(payload) => tally(&mut report, &place, &payload, &mut references),
                    Err(e) => report.plaintext.push((place, format!("unreadable: {e}"))),
                }
            }
        }
    }
    (report, references)
}

fn check(args: &HistoryCheckArgs) -> anyhow::Result<u8> {
    let history = read_input(args.input.as_deref())?;
    let (mut report, references) = audit(&history);
    report.stored = references.len();
    if !references.is_empty() {
        match args.storage.store() {
            Some(store) => fetch_and_tally(&store, references, &mut report)?,
            None => {
                for (place, _) in references {
                    report.unchecked.push((
                        place,
                        "an External Storage reference: give --storage-bucket (and the worker's \
                         prefix, endpoint, region) to check the object it names"
                            .to_owned(),
                    ));
                }
            }
        }
    }
    let ok = report.plaintext.is_empty() && report.unchecked.is_empty();
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &report_json(&report, ok))?;
        writeln!(stdout)?;
    } else {
        write_report(&mut stdout, &report, ok)?;
    }
    Ok(if ok { SEALED } else { PLAINTEXT })
}

fn tally(
    report: &mut Report,
    place: &Place,
    payload: &Payload,
    references: &mut Vec<(Place, Reference)>,
) {
    match classify(payload) {
        Verdict::Sealed { format, key } => {
            *report
                .sealed
                .entry(format)
                .or_default()
                .entry(key)
                .or_default() += 1
        }
        Verdict::Reference(r) => references.push((place.clone(), r)),
        Verdict::Plain(encoding) => report
            .plaintext
            .push((place.clone(), format!("{encoding}, not sealed"))),
        Verdict::Broken(why) => report.plaintext.push((place.clone(), why)),
    }
}

/// Fetches each stored payload (every reference first checked against the
/// bucket and prefix) and checks what it holds.
fn fetch_and_tally(
    store: &S3Store,
    references: Vec<(Place, Reference)>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let runtime = super::codec::runtime()?;
    let (mut places, mut locations) = (BTreeMap::new(), Vec::new());
    for (index, (place, reference)) in references.into_iter().enumerate() {
        match store.permit(index, &reference) {
            Ok(location) => {
                places.insert(index, place);
                locations.push((index, location));
            }
            Err(e) => report.unchecked.push((
                place,
                format!("an External Storage reference not followed: {e}"),
            )),
        }
    }
    let mut fetched = runtime
        .block_on(store.fetch_each(&locations, usize::MAX, |_, _, _| {}))
        .map_err(|e| {
            let place = places.get(&e.index()).map(ToString::to_string);
            let place = place.unwrap_or_default();
            anyhow::Error::new(e).context(format!("{place}: cannot fetch the stored payload"))
        })?;
    for (index, place) in places {
        let Some(payload) = fetched.remove(&index) else {
            continue;
        };
        report.stored_checked += 1;
        let mut nested = Vec::new();
        let stored_place = Place {
            path: format!("{} (the stored object)", place.path),
            ..place
        };
        tally(report, &stored_place, &payload, &mut nested);
        for (p, _) in nested {
            report
                .plaintext
                .push((p, "a stored object that is itself a reference".to_owned()));
        }
    }
    Ok(())
}

fn write_report(out: &mut impl Write, report: &Report, ok: bool) -> std::io::Result<()> {
    let sealed: usize = report.sealed.values().flat_map(|k| k.values()).sum();
    writeln!(out, "payloads: {}", report.payloads)?;
    for (format, keys) in &report.sealed {
        let keys: Vec<String> = keys.iter().map(|(k, n)| format!("{k} ({n})")).collect();
        writeln!(out, "  sealed {format}: under {}", keys.join(", "))?;
    }
    if report.stored > 0 {
        writeln!(
            out,
            "  in External Storage: {} (objects checked: {})",
            report.stored, report.stored_checked
        )?;
    }
    writeln!(
        out,
        "failures: {} ({} with encoded attributes, {} Temporal's own)",
        report.failures, report.failures_encoded, report.failures_by_temporal
    )?;
    if !report.search_attributes.is_empty() {
        writeln!(
            out,
            "search attributes (plaintext by design: the server indexes them): {}",
            report.search_attributes.join(", ")
        )?;
    }
    for (place, why) in &report.plaintext {
        writeln!(out, "PLAINTEXT {place}: {why}")?;
    }
    for (place, why) in &report.unchecked {
        writeln!(out, "UNCHECKED {place}: {why}")?;
    }
    if ok {
        writeln!(
            out,
            "sealed: all {sealed} payloads the server holds are ciphertext, and every failure \
             message is encoded or Temporal's own"
        )?;
    } else {
        writeln!(
            out,
            "NOT SEALED: {} place(s) in plaintext, {} not checked",
            report.plaintext.len(),
            report.unchecked.len()
        )?;
    }
    Ok(())
}

fn report_json(report: &Report, ok: bool) -> Value {
    let places = |list: &[(Place, String)]| -> Vec<Value> {
        list.iter()
            .map(|(place, why)| {
                json!({
                    "event_id": place.event.as_ref().map(|(id, _)| id),
                    "event_type": place.event.as_ref().map(|(_, kind)| kind),
                    "path": place.path,
                    "pointer": place.pointer,
                    "why": why,
                })
            })
            .collect()
    };
    json!({
        "sealed": ok,
        "payloads": report.payloads,
        "sealed_by_format_and_key": report.sealed,
        "stored": report.stored,
        "stored_checked": report.stored_checked,
        "failures": report.failures,
        "failures_encoded": report.failures_encoded,
        "failures_by_temporal": report.failures_by_temporal,
        "search_attributes": report.search_attributes,
        "plaintext": places(&report.plaintext),
        "unchecked": places(&report.unchecked),
    })
}

fn decode(args: &CodecInput) -> anyhow::Result<()> {
    let mut history = read_input(args.input.as_deref())?;
    let found = walk(&history);
    let mut places = Vec::new();
    let mut payloads = Vec::new();
    let mut failures = Vec::new();
    for (place, item) in found {
        match item {
            Found::Payload(map) => {
                payloads.push(Value::Object(map.clone()));
                places.push(place);
            }
            Found::Failure(_) => failures.push(place.pointer),
            Found::Shorthand | Found::SearchAttribute => {}
        }
    }
    let codec = super::codec::open(&args.keys, &args.allow)?;
    let store = args.storage.store();
    let runtime = store
        .as_ref()
        .map(|_| super::codec::runtime())
        .transpose()?;
    let body = serde_json::to_vec(&json!({ "payloads": payloads }))?;
    let answer = super::codec::run_batch(
        &codec,
        &body,
        Direction::Decode,
        runtime.as_ref().zip(store.as_ref()),
    )
    .map_err(|e| name_payload(e, &places))?;
    let answer: Value = serde_json::from_slice(&answer)?;
    let decoded = answer["payloads"]
        .as_array()
        .context("the codec gave no payloads")?;
    for (place, payload) in places.iter().zip(decoded) {
        if let Some(slot) = history.pointer_mut(&place.pointer) {
            *slot = payload.clone();
        }
    }
    for pointer in failures {
        if let Some(failure) = history.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            restore_failure(failure);
        }
    }
    let mut stdout = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut stdout, &history)?;
    writeln!(stdout)?;
    Ok(())
}

/// The codec's error names a payload by its index in the batch; say where it
/// is in the history too.
fn name_payload(e: anyhow::Error, places: &[Place]) -> anyhow::Error {
    let index = e
        .downcast_ref::<tcodec::CodecError>()
        .and_then(tcodec::CodecError::index)
        .or_else(|| {
            e.downcast_ref::<tcodec::storage::StorageError>()
                .map(tcodec::storage::StorageError::index)
        })
        .or_else(|| match e.downcast_ref::<tcodec_json::ProcessError>()? {
            tcodec_json::ProcessError::Codec(c) => c.index(),
            tcodec_json::ProcessError::Storage(s) => Some(s.index()),
            tcodec_json::ProcessError::Payload(p) => Some(p.index()),
            _ => None,
        });
    match index.and_then(|i| places.get(i)) {
        Some(place) => e.context(format!("cannot decode the payload at {place}")),
        None => e,
    }
}

/// A failure whose encoded attributes decoded to the SDKs' JSON
/// (`{"message": ..., "stack_trace": ...}`) gets its message and stack trace
/// back, as the SDKs and the Web UI show it.
fn restore_failure(failure: &mut Map<String, Value>) {
    let Some(attributes) = failure.get("encodedAttributes").and_then(Value::as_object) else {
        return;
    };
    let Ok(payload) = parse_payload(attributes) else {
        return;
    };
    if payload.encoding() != Some(b"json/plain") {
        return;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&payload.data) else {
        return;
    };
    if let Some(Value::String(message)) = fields.get("message") {
        failure.insert("message".to_owned(), Value::String(message.clone()));
    }
    if let Some(Value::String(stack)) = fields.get("stack_trace") {
        failure.insert("stackTrace".to_owned(), Value::String(stack.clone()));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn payload(encoding: &str, data: &[u8]) -> Value {
        json!({"metadata": {"encoding": b64(encoding.as_bytes())}, "data": b64(data)})
    }

    fn sealed(key: &str) -> Value {
        let mut data = vec![1, 1, 0, key.len() as u8];
        data.extend_from_slice(key.as_bytes());
        data.extend_from_slice(&[0; 24 + 16]);
        json!({"metadata": {
            "encoding": b64(b"binary/tcodec"),
            "tcodec-key-id": b64(key.as_bytes()),
        }, "data": b64(&data)})
    }

    fn report_of(history: &Value) -> Report {
        audit(history).0
    }

    fn history(events: Vec<Value>) -> Value {
        json!({ "events": events })
    }

    #[test]
    fn a_sealed_history_has_nothing_to_report_and_counts_keys() {
        let h = history(vec![
            json!({"eventId": "1", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "workflowExecutionStartedEventAttributes": {
                "input": {"payloads": [sealed("k1")]},
                "memo": {"fields": {"note": sealed("k1")}},
                "searchAttributes": {"indexedFields": {"Customer": payload("json/plain", b"\"x\"")}},
            }}),
            json!({"eventId": "5", "eventType": "EVENT_TYPE_ACTIVITY_TASK_FAILED",
            "activityTaskFailedEventAttributes": {"failure": {
                "message": "Encoded failure",
                "encodedAttributes": sealed("k2"),
                "applicationFailureInfo": {"details": {"payloads": [sealed("k2")]}},
            }}}),
            json!({"eventId": "6", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
            "workflowExecutionFailedEventAttributes": {"failure": {
                "message": "activity error",
                "activityFailureInfo": {"activityType": {"name": "charge"}},
                "cause": {"message": "Encoded failure", "encodedAttributes": sealed("k2"),
                          "applicationFailureInfo": {"type": "Declined"}},
            }}}),
            json!({"eventId": "7", "eventType": "EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT",
            "activityTaskTimedOutEventAttributes": {"failure": {
                "message": "activity StartToClose timeout",
                "timeoutFailureInfo": {"timeoutType": "TIMEOUT_TYPE_START_TO_CLOSE"},
            }}}),
        ]);
        let report = report_of(&h);
        assert!(report.plaintext.is_empty(), "{:?}", report.plaintext);
        assert_eq!(report.payloads, 5);
        assert_eq!(report.sealed["binary/tcodec"]["k1"], 2);
        assert_eq!(report.sealed["binary/tcodec"]["k2"], 3);
        // The activity's failure and the wrapper's cause are encoded; the
        // wrapper and the timeout are Temporal's own.
        assert_eq!(
            (
                report.failures,
                report.failures_encoded,
                report.failures_by_temporal
            ),
            (4, 2, 2)
        );
        assert_eq!(
            report.search_attributes,
            [
                "event 1 (WORKFLOW_EXECUTION_STARTED) workflowExecutionStartedEventAttributes.searchAttributes.indexedFields.Customer"
            ]
        );
    }

    #[test]
    fn plaintext_is_named_by_event_and_path() {
        let h = history(vec![
            json!({"eventId": "1", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED",
            "workflowExecutionStartedEventAttributes": {
                "input": {"payloads": [sealed("k1"), payload("json/plain", b"{}")]},
                "memo": {"fields": {"note": "shorthand text"}},
            }}),
            json!({"eventId": "9", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_FAILED",
            "workflowExecutionFailedEventAttributes": {"failure": {
                "message": "card declined",
                "applicationFailureInfo": {"type": "Declined"},
                "cause": {"message": "Encoded failure", "stackTrace": "at main.rs",
                          "encodedAttributes": sealed("k1"), "applicationFailureInfo": {}},
            }}}),
            json!({"eventId": "10", "eventType": "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
            "workflowExecutionSignaledEventAttributes": {"input": {"payloads": [
                {"metadata": {"encoding": b64(b"binary/tcodec"), "tcodec-key-id": b64(b"k1")},
                 "data": b64(b"not sealed at all, just text")},
                payload("binary/zlib", b"x"),
            ]}}}),
        ]);
        let found: Vec<String> = report_of(&h)
            .plaintext
            .iter()
            .map(|(p, why)| format!("{p}: {why}"))
            .collect();
        assert_eq!(
            found,
            [
                "event 1 (WORKFLOW_EXECUTION_STARTED) workflowExecutionStartedEventAttributes.input.payloads[1]: json/plain, not sealed",
                "event 1 (WORKFLOW_EXECUTION_STARTED) workflowExecutionStartedEventAttributes.memo.fields.note: a value printed as JSON: a json/plain payload (the temporal CLI shows those in shorthand)",
                "event 9 (WORKFLOW_EXECUTION_FAILED) workflowExecutionFailedEventAttributes.failure: a failure message in plaintext (an application failure of type \"Declined\", no encoded attributes)",
                "event 9 (WORKFLOW_EXECUTION_FAILED) workflowExecutionFailedEventAttributes.failure.cause: a failure stack trace in plaintext (beside its encoded attributes)",
                "event 10 (WORKFLOW_EXECUTION_SIGNALED) workflowExecutionSignaledEventAttributes.input.payloads[0]: binary/tcodec whose data is not sealed: format version 110 is not supported (this build reads version 1)",
                "event 10 (WORKFLOW_EXECUTION_SIGNALED) workflowExecutionSignaledEventAttributes.input.payloads[1]: binary/zlib, not sealed",
            ]
        );
    }

    #[test]
    fn pointers_address_what_was_found() {
        let h = history(vec![json!({"eventId": "1", "eventType": "EVENT_TYPE_X",
            "a/b": {"payloads": [sealed("k1")]}})]);
        let found = walk(&h);
        assert_eq!(found[0].0.pointer, "/events/0/a~1b/payloads/0");
        assert!(
            h.pointer(&found[0].0.pointer)
                .unwrap()
                .get("metadata")
                .is_some()
        );
    }

    #[test]
    fn a_decoded_failure_gets_its_message_back() {
        let mut failure = json!({"message": "Encoded failure", "encodedAttributes":
            payload("json/plain", br#"{"message":"card declined","stack_trace":"at x"}"#)});
        restore_failure(failure.as_object_mut().unwrap());
        assert_eq!(failure["message"], "card declined");
        assert_eq!(failure["stackTrace"], "at x");
    }
}
