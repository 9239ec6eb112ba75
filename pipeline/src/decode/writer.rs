//! Writer schemas: loading `.avsc` files and checking, once per schema, that telemetry can
//! be read from data written with it (Avro schema resolution against our
//! `telemetry.avsc`).
//!
//! The check goes field by field over *our* record: each field must be in the writer's
//! record with a type that resolves to ours (`int` → `long`, `long` → `timestamp-millis`,
//! `float` → `double`, a union all of whose branches resolve, ...), or have a default in
//! ours (`lot_id`, `wafer_id`). Writer fields we do not know are skipped when decoding. The
//! writer's record name is not compared (apache-avro does not compare it when decoding
//! either). For `tool_type` the writer's enum may hold symbols we do not know (a producer
//! that added a tool type): datums carrying those fail one by one, the rest decode; an enum
//! with no symbol in common with ours is rejected.

use std::path::Path;

use spcvm_schemas::apache_avro::error::CompatibilityError;
use spcvm_schemas::apache_avro::schema::{Name, RecordSchema, ResolvedSchema, Schema, SchemaKind};
use spcvm_schemas::apache_avro::schema_compatibility::SchemaCompatibility;
use spcvm_schemas::{parse_schema, telemetry_schema};

use super::error::{DecodeSetupError, clip};

/// Reads and parses the `.avsc` file at `path` and checks that telemetry can be read from
/// data written with it. `key` is the config key that led to the file, `id` the schema id
/// it is listed under (both for error messages).
pub(crate) fn load_avsc(
    path: &Path,
    key: &'static str,
    id: Option<u32>,
) -> Result<Schema, DecodeSetupError> {
    let text = std::fs::read_to_string(path).map_err(|source| DecodeSetupError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })?;
    let schema_error = |reason: String| DecodeSetupError::Schema {
        path: path.to_path_buf(),
        id,
        reason,
    };
    let schema = parse_schema(&text)
        .map_err(|e| schema_error(clip(format!("not a valid Avro schema: {e}"))))?;
    check_readable(&schema).map_err(schema_error)?;
    Ok(schema)
}

/// Parses schema text from the registry and checks it like [`load_avsc`].
pub(crate) fn parse_and_check(text: &str) -> Result<Schema, String> {
    let schema = parse_schema(text).map_err(|e| clip(format!("not a valid Avro schema: {e}")))?;
    check_readable(&schema)?;
    Ok(schema)
}

/// Checks that a datum written with `writer` can be resolved against our telemetry schema.
///
/// # Errors
///
/// Why not, naming the field.
pub(crate) fn check_readable(writer: &Schema) -> Result<(), String> {
    let names = ResolvedSchema::try_from(writer)
        .map_err(|e| clip(format!("cannot resolve the names in the schema: {e}")))?;
    let names = names.get_names();
    let deref = |schema: &Schema| -> Schema {
        match schema {
            Schema::Ref { name } => lookup(names, name).cloned().unwrap_or(schema.clone()),
            other => other.clone(),
        }
    };
    let Schema::Record(RecordSchema {
        fields: writer_fields,
        lookup: writer_lookup,
        ..
    }) = deref(writer)
    else {
        return Err(format!(
            "the writer schema is a {}, not a record",
            kind_name(writer)
        ));
    };
    let Schema::Record(RecordSchema {
        fields: our_fields, ..
    }) = telemetry_schema()
    else {
        return Err("our telemetry schema is not a record".into());
    };

    for ours in our_fields {
        let Some(&position) = writer_lookup.get(&ours.name) else {
            if ours.default.is_some() {
                continue;
            }
            return Err(format!(
                "the writer schema has no field `{}`, which telemetry requires (it has no default)",
                ours.name
            ));
        };
        let Some(theirs) = writer_fields.get(position) else {
            return Err(format!("field `{}`: broken field index", ours.name));
        };
        let theirs = deref(&theirs.schema);
        let mismatch = |detail: String| {
            let detail = if detail.is_empty() {
                detail
            } else {
                format!(": {detail}")
            };
            clip(format!(
                "field `{}`: the writer's {} cannot be read as our {}{detail}",
                ours.name,
                kind_name(&theirs),
                kind_name(&ours.schema)
            ))
        };
        if let (Schema::Enum(their_enum), Schema::Enum(our_enum)) = (&theirs, &ours.schema) {
            // Unknown symbols fail per datum (see the module docs); no common symbol at all
            // would fail every datum.
            if !their_enum
                .symbols
                .iter()
                .any(|s| our_enum.symbols.contains(s))
            {
                return Err(mismatch(format!(
                    "no symbol in common (writer: {:?}, ours: {:?})",
                    their_enum.symbols, our_enum.symbols
                )));
            }
            continue;
        }
        // apache-avro's checker only walks our (shallow, name-free) field types, so it
        // terminates; catch_unwind is a last line of defence for untrusted schemas.
        let verdict = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            SchemaCompatibility::can_read(&theirs, &ours.schema)
        }));
        match verdict {
            Ok(Ok(())) => {}
            // apache-avro's text for a plain type mismatch lists the types confusingly;
            // the kinds in our message say it better.
            Ok(Err(CompatibilityError::TypeExpected { .. })) => {
                return Err(mismatch(String::new()));
            }
            Ok(Err(e)) => return Err(mismatch(e.to_string())),
            Err(_) => return Err(mismatch("the compatibility check failed".into())),
        }
    }
    Ok(())
}

fn lookup<'a>(
    names: &'a std::collections::HashMap<Name, &'a Schema>,
    name: &Name,
) -> Option<&'a Schema> {
    names.get(name).copied()
}

/// A short human name for a schema's type, e.g. `string`, `timestamp-millis long`,
/// `map of double`, `union [null, string]`, `record io.spcvm.Telemetry`.
pub(crate) fn kind_name(schema: &Schema) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::TimestampMillis => "timestamp-millis long".into(),
        Schema::TimestampMicros => "timestamp-micros long".into(),
        Schema::Array(a) => format!("array of {}", kind_name(&a.items)),
        Schema::Map(m) => format!("map of {}", kind_name(&m.types)),
        Schema::Union(u) => format!(
            "union [{}]",
            u.variants()
                .iter()
                .map(kind_name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Schema::Record(r) => format!("record {}", r.name.fullname(None)),
        Schema::Enum(e) => format!("enum {}", e.name.fullname(None)),
        Schema::Fixed(f) => format!("fixed {}", f.name.fullname(None)),
        Schema::Ref { name } => format!("reference to {}", name.fullname(None)),
        other => format!("{:?}", SchemaKind::from(other)).to_lowercase(),
    }
}
