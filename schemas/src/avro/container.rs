//! Avro object-container files of [`Telemetry`] or [`Alert`] records.
//!
//! Both directions are implemented here rather than with apache-avro's `Writer` and
//! `Reader`:
//! * the writer uses the crate's deterministic record encoding, writes the `.avsc` text
//!   (with its docs) as the header's `avro.schema`, uses the `null` codec (readable by any
//!   Avro implementation) and never loses data on short writes (apache-avro 0.20's
//!   `Writer` calls `Write::write` and ignores partial writes);
//! * the reader checks every length against the bytes actually present and every record
//!   with the datum guard before decoding it (apache-avro's `Reader` trusts them), and
//!   reads files with the `null` or `deflate` codec.
//!
//! The reader resolves the file's writer schema against ours when they differ, so files
//! written with an older or newer schema version are read like
//! [`crate::decode_telemetry_avro_with_writer`] would.
//!
//! Errors while reading:
//! * a broken header is returned by the `read_*_container` call itself, as
//!   [`SchemaError::AvroContainer`];
//! * a broken block (bad length, truncated data, wrong sync marker, bad compression) or a
//!   record whose bytes do not form a datum is yielded once as
//!   [`SchemaError::AvroContainer`] or [`SchemaError::AvroContainerRecord`], and the
//!   iterator ends there, since the rest cannot be located reliably;
//! * a well-formed record that does not fit our schema (e.g. a `repeats` out of range or
//!   an unresolvable writer schema) is yielded as [`SchemaError::AvroContainerRecord`]
//!   and reading goes on with the next record.
//!
//! Record indexes are zero-based over the whole file; byte offsets in record errors count
//! from the start of the record, offsets in block errors from the start of the file.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::{self, BufReader, Read, Write};
use std::marker::PhantomData;
use std::time::{SystemTime, UNIX_EPOCH};

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::{Codec, DeflateSettings, Schema};

use super::{AvroRecord, decode_checked, guard, put_bytes, put_long};
use crate::alert::Alert;
use crate::error::{AvroError, SchemaError};
use crate::telemetry::Telemetry;

/// The four magic bytes that start every Avro object-container file.
const MAGIC: [u8; 4] = [b'O', b'b', b'j', 1];

/// Writes `records` as an Avro object-container file of [`crate::telemetry_schema`] (null
/// codec) to `writer`, then flushes it. An empty iterator writes a valid file with no
/// records.
///
/// # Errors
///
/// [`SchemaError::AvroContainer`] if writing to or flushing `writer` fails.
pub fn write_telemetry_container<'a, W: Write>(
    writer: W,
    records: impl IntoIterator<Item = &'a Telemetry>,
) -> Result<(), SchemaError> {
    write_container(writer, records).map_err(SchemaError::AvroContainer)
}

/// Reads an Avro object-container file of telemetry records.
///
/// The header is read before this returns; records are read lazily by the iterator. See
/// the [module documentation](self) for how errors are reported.
///
/// # Errors
///
/// [`SchemaError::AvroContainer`] if the header is missing, malformed, names an
/// unsupported codec or carries a writer schema that does not parse.
pub fn read_telemetry_container<R: Read>(
    reader: R,
) -> Result<impl Iterator<Item = Result<Telemetry, SchemaError>>, SchemaError> {
    ContainerReader::<R, Telemetry>::new(reader)
}

/// Writes `alerts` as an Avro object-container file of [`crate::alert_schema`]; see
/// [`write_telemetry_container`].
///
/// # Errors
///
/// [`SchemaError::AvroContainer`] if writing to or flushing `writer` fails.
pub fn write_alert_container<'a, W: Write>(
    writer: W,
    alerts: impl IntoIterator<Item = &'a Alert>,
) -> Result<(), SchemaError> {
    write_container(writer, alerts).map_err(SchemaError::AvroContainer)
}

/// Reads an Avro object-container file of alerts; see [`read_telemetry_container`].
///
/// # Errors
///
/// [`SchemaError::AvroContainer`] if the header is missing, malformed, names an
/// unsupported codec or carries a writer schema that does not parse.
pub fn read_alert_container<R: Read>(
    reader: R,
) -> Result<impl Iterator<Item = Result<Alert, SchemaError>>, SchemaError> {
    ContainerReader::<R, Alert>::new(reader)
}

/// Records are collected into blocks of about this many bytes.
const BLOCK_BYTES: usize = 64 * 1024;

fn write_container<'a, T: AvroRecord + 'a, W: Write>(
    writer: W,
    records: impl IntoIterator<Item = &'a T>,
) -> Result<(), AvroError> {
    let mut container = ContainerWriter::<W, T>::new(writer)?;
    for record in records {
        container.append(record)?;
    }
    container.finish().map(drop)
}

/// An object-container file of `T` records being written: the header at once, then
/// records into blocks of about [`BLOCK_BYTES`].
struct ContainerWriter<W: Write, T> {
    writer: W,
    marker: [u8; 16],
    /// Encoded records of the block not written yet.
    block: Vec<u8>,
    /// How many.
    count: i64,
    record: PhantomData<fn(&T)>,
}

impl<W: Write, T: AvroRecord> ContainerWriter<W, T> {
    /// Writes the header.
    fn new(mut writer: W) -> Result<Self, AvroError> {
        let marker = sync_marker();
        let mut header = Vec::with_capacity(T::SCHEMA_JSON.len() + 64);
        header.extend_from_slice(&MAGIC);
        put_long(&mut header, 2);
        put_bytes(&mut header, b"avro.schema");
        put_bytes(&mut header, T::SCHEMA_JSON.as_bytes());
        put_bytes(&mut header, b"avro.codec");
        put_bytes(&mut header, b"null");
        put_long(&mut header, 0);
        header.extend_from_slice(&marker);
        writer.write_all(&header).map_err(AvroError::Io)?;
        Ok(ContainerWriter {
            writer,
            marker,
            block: Vec::with_capacity(BLOCK_BYTES + 1024),
            count: 0,
            record: PhantomData,
        })
    }

    /// Adds `record`, writing the block once it is full.
    fn append(&mut self, record: &T) -> Result<(), AvroError> {
        record.encode_into(&mut self.block);
        self.count += 1;
        if self.block.len() >= BLOCK_BYTES {
            write_block(&mut self.writer, &mut self.block, self.count, &self.marker)?;
            self.count = 0;
        }
        Ok(())
    }

    /// Writes the last block and flushes; hands the writer back.
    fn finish(mut self) -> Result<W, AvroError> {
        if self.count > 0 {
            write_block(&mut self.writer, &mut self.block, self.count, &self.marker)?;
        }
        self.writer.flush().map_err(AvroError::Io)?;
        Ok(self.writer)
    }
}

/// An Avro object-container file of telemetry being written record by record (what
/// [`write_telemetry_container`] does with a whole collection), for a producer that does
/// not hold every record at once (`spcvm simulate`). The bytes are those
/// [`write_telemetry_container`] writes for the same records (up to the random sync marker).
pub struct TelemetryContainerWriter<W: Write>(ContainerWriter<W, Telemetry>);

impl<W: Write> TelemetryContainerWriter<W> {
    /// Writes the header (schema `schemas/avro/telemetry.avsc`, null codec) to `writer`.
    ///
    /// # Errors
    ///
    /// [`SchemaError::AvroContainer`] if writing fails.
    pub fn new(writer: W) -> Result<Self, SchemaError> {
        ContainerWriter::new(writer)
            .map(TelemetryContainerWriter)
            .map_err(SchemaError::AvroContainer)
    }

    /// Adds one record (written out with its block, about every 64 KiB).
    ///
    /// # Errors
    ///
    /// [`SchemaError::AvroContainer`] if writing a full block fails.
    pub fn append(&mut self, record: &Telemetry) -> Result<(), SchemaError> {
        self.0.append(record).map_err(SchemaError::AvroContainer)
    }

    /// Writes the last block, flushes, and returns the writer. A container dropped
    /// unfinished lacks its last block.
    ///
    /// # Errors
    ///
    /// [`SchemaError::AvroContainer`] if writing or flushing fails.
    pub fn finish(self) -> Result<W, SchemaError> {
        self.0.finish().map_err(SchemaError::AvroContainer)
    }
}

impl<W: Write> std::fmt::Debug for TelemetryContainerWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryContainerWriter")
            .field("pending_records", &self.0.count)
            .finish_non_exhaustive()
    }
}

/// Writes one block (record count, byte size, data, sync marker) and empties `block`.
fn write_block<W: Write>(
    writer: &mut W,
    block: &mut Vec<u8>,
    count: i64,
    marker: &[u8; 16],
) -> Result<(), AvroError> {
    let mut prefix = Vec::with_capacity(20);
    put_long(&mut prefix, count);
    put_long(&mut prefix, block.len() as i64);
    writer.write_all(&prefix).map_err(AvroError::Io)?;
    writer.write_all(block).map_err(AvroError::Io)?;
    writer.write_all(marker).map_err(AvroError::Io)?;
    block.clear();
    Ok(())
}

/// A fresh pseudo-random sync marker, from std's randomly keyed hasher and the clock.
fn sync_marker() -> [u8; 16] {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut marker = [0u8; 16];
    for (i, chunk) in marker.chunks_mut(8).enumerate() {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_usize(i);
        hasher.write_u128(nanos);
        chunk.copy_from_slice(&hasher.finish().to_le_bytes());
    }
    marker
}

/// Streaming reader of an object-container file of `T` records.
struct ContainerReader<R, T> {
    input: Counting<BufReader<R>>,
    writer_schema: Schema,
    /// Named types of `writer_schema`, for the datum guard.
    names: HashMap<Name, Schema>,
    /// Whether records must be resolved from `writer_schema` to `T::schema()`.
    resolve: bool,
    /// Lower bound on a record's encoded size (at least 1).
    min_record_size: u64,
    codec: Codec,
    marker: [u8; 16],
    /// Decompressed data of the current block.
    block: Vec<u8>,
    /// Read position in `block`.
    block_pos: usize,
    /// Records of the current block not read yet.
    block_left: u64,
    /// Index of the next record in the file.
    index: u64,
    /// Set after an error the reader cannot recover from.
    done: bool,
    record: PhantomData<fn() -> T>,
}

impl<R: Read, T: AvroRecord> ContainerReader<R, T> {
    fn new(reader: R) -> Result<Self, SchemaError> {
        Self::open(reader).map_err(SchemaError::AvroContainer)
    }

    fn open(reader: R) -> Result<Self, AvroError> {
        let mut input = Counting {
            inner: BufReader::new(reader),
            offset: 0,
        };
        let mut magic = [0u8; 4];
        input.read_exact_or(&mut magic, "the file header")?;
        if magic != MAGIC {
            return Err(malformed(
                0,
                format!(
                    "not an Avro container file: starts with {magic:02x?}, expected \"Obj\\x01\""
                ),
            ));
        }
        let metadata = input.read_metadata()?;
        let schema_bytes = metadata
            .get("avro.schema")
            .ok_or_else(|| malformed(input.offset, "header has no avro.schema entry".into()))?;
        let schema_text = std::str::from_utf8(schema_bytes)
            .map_err(|e| malformed(input.offset, format!("avro.schema is not valid UTF-8: {e}")))?;
        let writer_schema = super::parse_schema(schema_text)?;
        let names = ResolvedSchema::try_from(&writer_schema)
            .map_err(AvroError::WriterSchema)?
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect();
        let codec = match metadata.get("avro.codec").map(Vec::as_slice) {
            None | Some(b"null") => Codec::Null,
            Some(b"deflate") => Codec::Deflate(DeflateSettings::default()),
            Some(other) => {
                return Err(malformed(
                    input.offset,
                    format!(
                        "unsupported codec {:?} (this reader supports null and deflate)",
                        String::from_utf8_lossy(other)
                    ),
                ));
            }
        };
        let mut marker = [0u8; 16];
        input.read_exact_or(&mut marker, "the header's sync marker")?;
        let resolve = writer_schema != *T::schema();
        let min_record_size = guard::min_size(&writer_schema).max(1) as u64;
        Ok(ContainerReader {
            input,
            writer_schema,
            names,
            resolve,
            min_record_size,
            codec,
            marker,
            block: Vec::new(),
            block_pos: 0,
            block_left: 0,
            index: 0,
            done: false,
            record: PhantomData,
        })
    }

    /// Reads the next non-empty block into `self.block`; `Ok(false)` at end of file.
    fn next_block(&mut self) -> Result<bool, AvroError> {
        loop {
            if self.block_pos != self.block.len() {
                return Err(malformed(
                    self.input.offset,
                    format!(
                        "block before byte {} has {} byte(s) left after its last record",
                        self.input.offset,
                        self.block.len() - self.block_pos
                    ),
                ));
            }
            let start = self.input.offset;
            let Some(count) = self.input.read_varint_or_eof("block record count")? else {
                return Ok(false);
            };
            let size = self.input.read_varint("block size")?;
            let (Ok(count), Ok(size)) = (u64::try_from(count), usize::try_from(size)) else {
                return Err(malformed(
                    start,
                    format!("block has negative record count {count} or size {size}"),
                ));
            };
            let mut data = self.input.read_up_to(size, "block data")?;
            let mut marker = [0u8; 16];
            let marker_at = self.input.offset;
            self.input
                .read_exact_or(&mut marker, "a block's sync marker")?;
            if marker != self.marker {
                return Err(malformed(
                    marker_at,
                    "sync marker does not match the header's (corrupt or concatenated file?)"
                        .into(),
                ));
            }
            self.codec
                .decompress(&mut data)
                .map_err(|e| malformed(start, format!("block data does not decompress: {e}")))?;
            if count.saturating_mul(self.min_record_size) > data.len() as u64 {
                return Err(malformed(
                    start,
                    format!(
                        "block announces {count} record(s) but holds only {} byte(s)",
                        data.len()
                    ),
                ));
            }
            self.block = data;
            self.block_pos = 0;
            self.block_left = count;
            if count > 0 {
                return Ok(true);
            }
        }
    }

    fn next_record(&mut self) -> Option<Result<T, SchemaError>> {
        if self.done {
            return None;
        }
        if self.block_left == 0 {
            match self.next_block() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(SchemaError::AvroContainer(error)));
                }
            }
        }
        let index = self.index;
        self.index += 1;
        self.block_left -= 1;
        let bytes = &self.block[self.block_pos..];
        let reader_schema = self.resolve.then(T::schema);
        match guard::check_datum(&self.writer_schema, &self.names, bytes) {
            Err(error) => {
                // The record's extent is unknown, so the rest of the file is lost.
                self.done = true;
                Some(Err(SchemaError::AvroContainerRecord { index, error }))
            }
            Ok(len) => {
                self.block_pos += len;
                let result = decode_checked::<T>(&self.writer_schema, reader_schema, &bytes[..len]);
                Some(result.map_err(|error| SchemaError::AvroContainerRecord { index, error }))
            }
        }
    }
}

impl<R: Read, T: AvroRecord> Iterator for ContainerReader<R, T> {
    type Item = Result<T, SchemaError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}

fn malformed(offset: u64, reason: String) -> AvroError {
    AvroError::Malformed { offset, reason }
}

/// A reader that counts the bytes read, for error offsets.
struct Counting<R> {
    inner: R,
    offset: u64,
}

impl<R: Read> Counting<R> {
    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> Result<(), AvroError> {
        let start = self.offset;
        let got = self.read_up_to_into(buf)?;
        if got < buf.len() {
            return Err(malformed(
                start,
                format!(
                    "{what} needs {} byte(s) but the file ends after {got}",
                    buf.len()
                ),
            ));
        }
        Ok(())
    }

    /// Fills as much of `buf` as the input allows; returns how much was filled.
    fn read_up_to_into(&mut self, buf: &mut [u8]) -> Result<usize, AvroError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => {
                    filled += n;
                    self.offset += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(AvroError::Io(e)),
            }
        }
        Ok(filled)
    }

    /// Reads exactly `len` bytes, growing the buffer only as data actually arrives (a
    /// corrupt length cannot trigger a huge allocation).
    fn read_up_to(&mut self, len: usize, what: &str) -> Result<Vec<u8>, AvroError> {
        let start = self.offset;
        let mut data = Vec::new();
        let got = (&mut self.inner)
            .take(len as u64)
            .read_to_end(&mut data)
            .map_err(AvroError::Io)?;
        self.offset += got as u64;
        if got < len {
            return Err(malformed(
                start,
                format!("{what} needs {len} byte(s) but the file ends after {got}"),
            ));
        }
        Ok(data)
    }

    fn read_varint(&mut self, what: &str) -> Result<i64, AvroError> {
        let start = self.offset;
        self.read_varint_or_eof(what)?
            .ok_or_else(|| malformed(start, format!("{what} is cut short by end of file")))
    }

    /// Reads a zig-zag varint; `Ok(None)` if the input ends before its first byte.
    fn read_varint_or_eof(&mut self, what: &str) -> Result<Option<i64>, AvroError> {
        let start = self.offset;
        let mut raw: u64 = 0;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            if self.read_up_to_into(&mut byte)? == 0 {
                if i == 0 {
                    return Ok(None);
                }
                return Err(malformed(
                    start,
                    format!("{what} is cut short by end of file"),
                ));
            }
            let byte = byte[0];
            if i == 9 && byte > 1 {
                break;
            }
            raw |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(((raw >> 1) as i64) ^ -((raw & 1) as i64)));
            }
        }
        Err(malformed(start, format!("{what} overflows 64 bits")))
    }

    /// Reads the header's metadata map (string keys, bytes values).
    fn read_metadata(&mut self) -> Result<HashMap<String, Vec<u8>>, AvroError> {
        let mut metadata = HashMap::new();
        loop {
            let start = self.offset;
            let count = self.read_varint("header metadata block count")?;
            if count == 0 {
                return Ok(metadata);
            }
            if count < 0 {
                let size = self.read_varint("header metadata block size")?;
                if size < 0 {
                    return Err(malformed(
                        start,
                        format!("header metadata block has negative size {size}"),
                    ));
                }
            }
            for _ in 0..count.unsigned_abs() {
                let key_at = self.offset;
                let key = self.read_bytes("header metadata key")?;
                let key = String::from_utf8(key).map_err(|e| {
                    malformed(key_at, format!("header metadata key is not UTF-8: {e}"))
                })?;
                let value = self.read_bytes("header metadata value")?;
                metadata.insert(key, value);
            }
        }
    }

    fn read_bytes(&mut self, what: &str) -> Result<Vec<u8>, AvroError> {
        let start = self.offset;
        let len = self.read_varint(what)?;
        let len = usize::try_from(len)
            .map_err(|_| malformed(start, format!("{what} has negative length {len}")))?;
        self.read_up_to(len, what)
    }
}
