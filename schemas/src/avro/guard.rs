//! Structural pre-check of a binary Avro datum before apache-avro decodes it.
//!
//! apache-avro 0.20 trusts length and count prefixes too far for untrusted input:
//!
//! * a map or array block count is only capped at 512 Mi *items*, and it is passed to
//!   `reserve` before any item is read, so an 11-byte datum claiming 500 million map
//!   entries makes the allocator abort the whole process;
//! * a string cut short by the end of input decodes as `Value::Null` instead of an error,
//!   and a union index cut short decodes as branch 0;
//! * recursion depth is unbounded for recursive writer schemas.
//!
//! [`check_datum`] walks the bytes against the writer schema without allocating, checks
//! that every length, count, index and nesting level is plausible for the bytes actually
//! present, and returns the datum's length. Only then is the datum handed to apache-avro,
//! whose allocations are thereby bounded by a small multiple of the input size.

use std::borrow::Borrow;
use std::collections::HashMap;

use apache_avro::Schema;
use apache_avro::schema::{Name, Namespace};

use crate::error::AvroError;

/// Deepest nesting of records, arrays, maps and unions accepted in one datum.
const MAX_DEPTH: usize = 64;

/// Checks that `bytes` starts with one well-formed datum of `schema` and returns its length
/// in bytes (trailing bytes are the caller's business).
///
/// `names` resolves named references in `schema` (from
/// [`apache_avro::schema::ResolvedSchema::get_names`]).
pub(crate) fn check_datum<S: Borrow<Schema>>(
    schema: &Schema,
    names: &HashMap<Name, S>,
    bytes: &[u8],
) -> Result<usize, AvroError> {
    let mut cursor = Cursor {
        bytes,
        pos: 0,
        names,
    };
    cursor.check(schema, &None, 0)?;
    Ok(cursor.pos)
}

struct Cursor<'a, 'n, S> {
    bytes: &'a [u8],
    pos: usize,
    names: &'n HashMap<Name, S>,
}

impl<'a, S: Borrow<Schema>> Cursor<'a, '_, S> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn malformed(&self, offset: usize, reason: String) -> AvroError {
        AvroError::Malformed {
            offset: offset as u64,
            reason,
        }
    }

    /// Consumes `n` bytes, or fails if fewer remain.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], AvroError> {
        if n > self.remaining() {
            return Err(self.malformed(
                self.pos,
                format!(
                    "{what} needs {n} byte(s) but only {} remain (truncated input?)",
                    self.remaining()
                ),
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    /// Reads a zig-zag variable-length long (at most 10 bytes).
    fn varint(&mut self, what: &str) -> Result<i64, AvroError> {
        let start = self.pos;
        let mut raw: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.bytes.get(self.pos) else {
                return Err(self.malformed(start, format!("{what} is cut short by end of input")));
            };
            self.pos += 1;
            if i == 9 && byte > 1 {
                return Err(self.malformed(start, format!("{what} overflows 64 bits")));
            }
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err(self.malformed(start, format!("{what} overflows 64 bits")))
    }

    /// Reads a zig-zag varint that must fit an Avro `int`.
    fn varint_i32(&mut self, what: &str) -> Result<i32, AvroError> {
        let start = self.pos;
        let value = self.varint(what)?;
        i32::try_from(value)
            .map_err(|_| self.malformed(start, format!("{what} {value} does not fit a 32-bit int")))
    }

    /// Reads a length prefix and the bytes it announces.
    fn length_prefixed(&mut self, what: &str) -> Result<&'a [u8], AvroError> {
        let start = self.pos;
        let len = self.varint(what)?;
        let len = usize::try_from(len)
            .map_err(|_| self.malformed(start, format!("{what} has negative length {len}")))?;
        self.take(len, what)
    }

    fn check(
        &mut self,
        schema: &Schema,
        namespace: &Namespace,
        depth: usize,
    ) -> Result<(), AvroError> {
        if depth > MAX_DEPTH {
            return Err(self.malformed(
                self.pos,
                format!("data nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        match schema {
            Schema::Null => {}
            Schema::Boolean => {
                let at = self.pos;
                let byte = self.take(1, "boolean")?[0];
                if byte > 1 {
                    return Err(self.malformed(at, format!("boolean byte is {byte}, not 0 or 1")));
                }
            }
            Schema::Int | Schema::Date | Schema::TimeMillis => {
                self.varint_i32("int")?;
            }
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => {
                self.varint("long")?;
            }
            Schema::Float => {
                self.take(4, "float")?;
            }
            Schema::Double => {
                self.take(8, "double")?;
            }
            // apache-avro decodes uuid and big-decimal as length-prefixed bytes.
            Schema::Bytes | Schema::BigDecimal | Schema::Uuid => {
                self.length_prefixed("bytes")?;
            }
            Schema::String => {
                let at = self.pos;
                let text = self.length_prefixed("string")?;
                if let Err(e) = std::str::from_utf8(text) {
                    return Err(self.malformed(at, format!("string is not valid UTF-8: {e}")));
                }
            }
            Schema::Fixed(fixed) => {
                self.take(fixed.size, "fixed")?;
            }
            Schema::Duration => {
                self.take(12, "duration")?;
            }
            Schema::Decimal(decimal) => self.check(&decimal.inner, namespace, depth + 1)?,
            Schema::Array(array) => {
                let item_size = min_size(&array.items);
                self.blocks("array", item_size, |cursor| {
                    cursor.check(&array.items, namespace, depth + 1)
                })?;
            }
            Schema::Map(map) => {
                let entry_size = 1 + min_size(&map.types);
                self.blocks("map", entry_size, |cursor| {
                    let at = cursor.pos;
                    let key = cursor.length_prefixed("map key")?;
                    if let Err(e) = std::str::from_utf8(key) {
                        return Err(
                            cursor.malformed(at, format!("map key is not valid UTF-8: {e}"))
                        );
                    }
                    cursor.check(&map.types, namespace, depth + 1)
                })?;
            }
            Schema::Union(union) => {
                let at = self.pos;
                let index = self.varint("union branch index")?;
                let variants = union.variants();
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| variants.get(i))
                    .ok_or_else(|| {
                        self.malformed(
                            at,
                            format!(
                                "union branch index {index} is out of range (the union has {} branches)",
                                variants.len()
                            ),
                        )
                    })?;
                self.check(variant, namespace, depth + 1)?;
            }
            Schema::Record(record) => {
                let inner = record.name.fully_qualified_name(namespace).namespace;
                for field in &record.fields {
                    self.check(&field.schema, &inner, depth + 1)?;
                }
            }
            Schema::Enum(enumeration) => {
                let at = self.pos;
                let index = self.varint_i32("enum index")?;
                let in_range = usize::try_from(index).is_ok_and(|i| i < enumeration.symbols.len());
                if !in_range {
                    return Err(self.malformed(
                        at,
                        format!(
                            "enum index {index} is out of range for {} ({} symbols)",
                            enumeration.name.name,
                            enumeration.symbols.len()
                        ),
                    ));
                }
            }
            Schema::Ref { name } => {
                let full = name.fully_qualified_name(namespace);
                let Some(target) = self.names.get(&full) else {
                    return Err(self.malformed(
                        self.pos,
                        format!("schema refers to unknown type {}", full.fullname(None)),
                    ));
                };
                self.check(target.borrow(), &full.namespace, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Walks the blocks of an array or map, calling `item` once per element.
    ///
    /// A block may not announce more elements than could fit in the bytes that remain
    /// (each takes at least `min_item_size` bytes, counted as at least 1), and all blocks
    /// together may not announce more elements than there were bytes at the start.
    fn blocks(
        &mut self,
        what: &str,
        min_item_size: usize,
        mut item: impl FnMut(&mut Self) -> Result<(), AvroError>,
    ) -> Result<(), AvroError> {
        let budget = self.remaining() as u64;
        let mut total: u64 = 0;
        loop {
            let at = self.pos;
            let raw = self.varint(&format!("{what} block count"))?;
            let count = match raw {
                0 => return Ok(()),
                n if n > 0 => n.unsigned_abs(),
                n => {
                    // A negative count is followed by the block's size in bytes.
                    let size = self.varint(&format!("{what} block size"))?;
                    if size < 0 {
                        return Err(self
                            .malformed(at, format!("{what} block has negative byte size {size}")));
                    }
                    n.unsigned_abs()
                }
            };
            let needed = count.saturating_mul(min_item_size.max(1) as u64);
            total = total.saturating_add(count);
            if needed > self.remaining() as u64 || total > budget {
                return Err(self.malformed(
                    at,
                    format!(
                        "{what} block announces {count} element(s), more than the {} remaining byte(s) can hold",
                        self.remaining()
                    ),
                ));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }
}

/// A lower bound on the encoded size of any datum of `schema`, in bytes.
///
/// Named references count as 0 so that recursive schemas terminate.
pub(crate) fn min_size(schema: &Schema) -> usize {
    match schema {
        Schema::Null | Schema::Ref { .. } => 0,
        Schema::Float => 4,
        Schema::Double => 8,
        Schema::Duration => 12,
        Schema::Fixed(fixed) => fixed.size,
        Schema::Decimal(decimal) => min_size(&decimal.inner),
        Schema::Union(union) => {
            1 + union
                .variants()
                .iter()
                .map(min_size)
                .min()
                .unwrap_or_default()
        }
        Schema::Record(record) => record.fields.iter().fold(0usize, |sum, field| {
            sum.saturating_add(min_size(&field.schema))
        }),
        // Every other type starts with at least one varint byte.
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::schema::ResolvedSchema;

    use super::*;

    fn check(schema_json: &str, bytes: &[u8]) -> Result<usize, AvroError> {
        let schema = Schema::parse_str(schema_json).unwrap();
        let resolved = ResolvedSchema::try_from(&schema).unwrap();
        check_datum(&schema, resolved.get_names(), bytes)
    }

    fn zigzag(n: i64) -> Vec<u8> {
        let mut raw = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (raw & 0x7f) as u8;
            raw >>= 7;
            if raw == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn message(result: Result<usize, AvroError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn varints_decode_like_avro() {
        for n in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let bytes = zigzag(n);
            let names: HashMap<Name, Schema> = HashMap::new();
            let mut cursor = Cursor {
                bytes: &bytes,
                pos: 0,
                names: &names,
            };
            assert_eq!(cursor.varint("x").unwrap(), n);
            assert_eq!(cursor.pos, bytes.len());
        }
        assert_eq!(
            message(check(r#""long""#, &[0xff; 11])),
            "malformed data at byte 0: long overflows 64 bits"
        );
        assert_eq!(
            message(check(r#""long""#, &[0x80, 0x80])),
            "malformed data at byte 0: long is cut short by end of input"
        );
        assert_eq!(
            message(check(r#""int""#, &zigzag(1 << 40))),
            "malformed data at byte 0: int 1099511627776 does not fit a 32-bit int"
        );
    }

    #[test]
    fn huge_map_count_is_rejected_before_allocation() {
        // The datum that makes apache-avro 0.20 abort the process.
        let mut bytes = zigzag(500_000_000);
        bytes.extend_from_slice(&[2, b'a']);
        assert_eq!(
            message(check(r#"{"type":"map","values":"double"}"#, &bytes)),
            "malformed data at byte 0: map block announces 500000000 element(s), \
             more than the 2 remaining byte(s) can hold"
        );
    }

    #[test]
    fn map_and_array_blocks() {
        let schema = r#"{"type":"map","values":"double"}"#;
        // Two blocks: one positive count, one negative count with byte size.
        let mut bytes = vec![2, 2, b'a'];
        bytes.extend_from_slice(&1.5f64.to_le_bytes());
        bytes.extend_from_slice(&[1, 20, 2, b'b']);
        bytes.extend_from_slice(&2.5f64.to_le_bytes());
        bytes.push(0);
        assert_eq!(check(schema, &bytes).unwrap(), bytes.len());
        // Block claims 2 entries of at least 9 bytes each, only 10 bytes remain.
        let mut short = vec![4, 2, b'a'];
        short.extend_from_slice(&1.5f64.to_le_bytes());
        assert!(message(check(schema, &short)).contains("announces 2 element(s)"));
        // Arrays of nulls may not announce more items than there are bytes.
        assert_eq!(
            check(r#"{"type":"array","items":"null"}"#, &[6, 0, 0, 0]).unwrap(),
            2
        );
        assert!(check(r#"{"type":"array","items":"null"}"#, &[200, 1, 0]).is_err());
        // Five one-item blocks are fine; but all blocks together may not announce more
        // zero-size items than there were bytes when the array started.
        assert_eq!(
            check(r#"{"type":"array","items":"null"}"#, &[2, 2, 2, 2, 2, 0]).unwrap(),
            6
        );
        assert_eq!(
            message(check(r#"{"type":"array","items":"null"}"#, &[4, 4, 4, 0])),
            "malformed data at byte 2: array block announces 2 element(s), more than the 1 remaining byte(s) can hold"
        );
    }

    #[test]
    fn truncated_string_is_an_error_not_null() {
        assert_eq!(
            message(check(r#""string""#, &[10, b'a', b'b'])),
            "malformed data at byte 1: string needs 5 byte(s) but only 2 remain (truncated input?)"
        );
        assert_eq!(
            message(check(r#""string""#, &[3])),
            "malformed data at byte 0: string has negative length -2"
        );
        assert!(
            message(check(r#""string""#, &[4, 0xff, 0xfe]))
                .starts_with("malformed data at byte 0: string is not valid UTF-8")
        );
    }

    #[test]
    fn unions_enums_and_booleans() {
        let union = r#"["null","string"]"#;
        assert_eq!(check(union, &[0]).unwrap(), 1);
        assert_eq!(check(union, &[2, 2, b'x']).unwrap(), 3);
        assert_eq!(
            message(check(union, &[4])),
            "malformed data at byte 0: union branch index 2 is out of range (the union has 2 branches)"
        );
        assert!(message(check(union, &[])).contains("union branch index is cut short"));
        let enumeration = r#"{"type":"enum","name":"E","symbols":["a","b"]}"#;
        assert_eq!(check(enumeration, &[2]).unwrap(), 1);
        assert_eq!(
            message(check(enumeration, &[4])),
            "malformed data at byte 0: enum index 2 is out of range for E (2 symbols)"
        );
        assert!(check(enumeration, &[1]).is_err());
        assert_eq!(check(r#""boolean""#, &[1]).unwrap(), 1);
        assert_eq!(
            message(check(r#""boolean""#, &[2])),
            "malformed data at byte 0: boolean byte is 2, not 0 or 1"
        );
    }

    #[test]
    fn recursive_schema_depth_is_bounded() {
        let schema = r#"{"type":"record","name":"Node","fields":[
            {"name":"next","type":["null","Node"]}]}"#;
        assert_eq!(check(schema, &[2, 2, 0]).unwrap(), 3);
        let deep = vec![2u8; 10_000];
        assert!(message(check(schema, &deep)).contains("nests deeper than 64 levels"));
    }

    #[test]
    fn min_sizes() {
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","fields":[
                {"name":"a","type":"double"},{"name":"b","type":["null","float"]},
                {"name":"c","type":{"type":"fixed","name":"F","size":16}},
                {"name":"d","type":"string"}]}"#,
        )
        .unwrap();
        assert_eq!(min_size(&schema), 8 + 1 + 16 + 1);
    }
}
