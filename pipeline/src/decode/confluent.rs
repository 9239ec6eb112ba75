//! The Confluent Schema Registry wire format: magic byte `0x00`, the writer schema's id as
//! a 4-byte big-endian unsigned integer, then one binary Avro datum.

use super::error::DecodeError;

/// The magic byte that opens every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the header: magic byte and schema id.
pub const HEADER_LEN: usize = 5;

/// Splits a Confluent-framed payload into its schema id and the Avro datum that follows
/// the header (which starts at payload byte [`HEADER_LEN`]).
///
/// # Errors
///
/// [`DecodeError::Framing`] (kind `magic_byte`) if the payload is shorter than the header
/// or does not start with `0x00`.
pub fn split_frame(payload: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let Some((header, datum)) = payload.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::Framing {
            reason: format!(
                "payload of {} byte(s) is shorter than the {HEADER_LEN}-byte header \
                 (magic byte 0x00 + 4-byte schema id)",
                payload.len()
            ),
        });
    };
    let [magic, id @ ..] = *header;
    if magic != MAGIC_BYTE {
        return Err(DecodeError::Framing {
            reason: format!(
                "byte 0 is 0x{magic:02x}, expected magic byte 0x00{}",
                magic_hint(magic)
            ),
        });
    }
    Ok((u32::from_be_bytes(id), datum))
}

/// A guess at what a payload with the wrong first byte is, for the error message.
fn magic_hint(byte: u8) -> &'static str {
    match byte {
        b'{' | b'[' => " (the payload looks like JSON: is `decode.format` right?)",
        1 => {
            " (0x01 opens a schema GUID: GUID framing is not supported, configure the \
             producer's serializer with the default prefix schema id serializer)"
        }
        _ => "",
    }
}
