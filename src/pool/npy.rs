//! The .npy format (NEP 1): header parsing and a streaming writer.
//!
//! Only little-endian numeric arrays are read; the data itself is never read
//! here, only located, so callers can memory-map it.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Element types alpool reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// `<f2`.
    F16,
    /// `<f4`.
    F32,
    /// `<f8`.
    F64,
    /// `|u1`.
    U8,
    /// `<i4`.
    I32,
    /// `<i8`.
    I64,
    /// `<u4`.
    U32,
    /// `<u8`.
    U64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::F16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// The numpy `descr` string.
    pub fn descr(self) -> &'static str {
        match self {
            DType::F16 => "<f2",
            DType::F32 => "<f4",
            DType::F64 => "<f8",
            DType::U8 => "|u1",
            DType::I32 => "<i4",
            DType::I64 => "<i8",
            DType::U32 => "<u4",
            DType::U64 => "<u8",
        }
    }

    fn parse(descr: &str) -> Option<DType> {
        // '=' means native order; alpool only runs on little-endian targets.
        let d = descr.replace('=', "<");
        Some(match d.as_str() {
            "<f2" => DType::F16,
            "<f4" => DType::F32,
            "<f8" => DType::F64,
            "|u1" | "<u1" | "u1" => DType::U8,
            "<i4" => DType::I32,
            "<i8" => DType::I64,
            "<u4" => DType::U32,
            "<u8" => DType::U64,
            _ => return None,
        })
    }
}

/// A parsed .npy header: where the data starts and what it holds.
#[derive(Clone, Debug)]
pub struct Header {
    /// The element type.
    pub dtype: DType,
    /// The array's shape.
    pub shape: Vec<usize>,
    /// Where the data starts, in bytes from the file's start.
    pub data_offset: usize,
}

impl Header {
    /// Elements in the array, if the product fits.
    pub fn elements(&self) -> Option<u64> {
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
    }

    /// Bytes of data, if the product fits.
    pub fn data_bytes(&self) -> Option<u64> {
        self.elements()?.checked_mul(self.dtype.size() as u64)
    }
}

/// Parses the header at the start of `bytes` (the whole file or at least its
/// first few KiB). `accept` lists the dtypes the caller can use; `expected`
/// says so in words for the error message.
pub fn parse_header(
    path: &Path,
    bytes: &[u8],
    accept: &[DType],
    expected: &'static str,
) -> Result<Header> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(Error::npy(path, "missing the \\x93NUMPY magic string"));
    }
    let major = bytes[6];
    let (len, start): (usize, usize) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(Error::npy(path, "header is cut short"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(Error::npy(path, format!("unknown format version {v}"))),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| Error::npy(path, "header is cut short"))?;
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| Error::npy(path, "header is not valid text"))?;
    let dict = parse_dict(text).map_err(|reason| Error::npy(path, reason))?;

    let descr = dict
        .descr
        .ok_or_else(|| Error::npy(path, "header has no 'descr'"))?;
    let fortran = dict
        .fortran_order
        .ok_or_else(|| Error::npy(path, "header has no 'fortran_order'"))?;
    let shape = dict
        .shape
        .ok_or_else(|| Error::npy(path, "header has no 'shape'"))?;
    let dtype = match DType::parse(&descr) {
        Some(d) if accept.contains(&d) => d,
        _ => {
            let hint = if descr.starts_with('>') {
                "; big-endian data: convert with arr.astype(arr.dtype.newbyteorder('<'))"
            } else {
                ""
            };
            return Err(Error::UnsupportedDtype {
                path: path.into(),
                descr: format!("{descr}{hint}"),
                expected,
            });
        }
    };
    if fortran && shape.iter().filter(|&&d| d > 1).count() > 1 {
        return Err(Error::FortranOrder { path: path.into() });
    }
    Ok(Header {
        dtype,
        shape,
        data_offset: end,
    })
}

#[derive(Default)]
struct Dict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// A parser for the small Python-literal dict numpy writes, e.g.
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> std::result::Result<Dict, String> {
    let mut p = Lexer {
        s: text.trim_end().as_bytes(),
        i: 0,
    };
    let mut dict = Dict::default();
    p.expect(b'{')?;
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.expect(b':')?;
        match key.as_str() {
            "descr" => dict.descr = Some(p.string()?),
            "fortran_order" => dict.fortran_order = Some(p.boolean()?),
            "shape" => dict.shape = Some(p.tuple()?),
            other => return Err(format!("unexpected header key {other:?}")),
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.expect(b'}')?;
            break;
        }
    }
    Ok(dict)
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!(
                "malformed header: expected '{}' at byte {}",
                c as char, self.i
            ))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        self.skip_ws();
        let q = *self
            .s
            .get(self.i)
            .ok_or("malformed header: unexpected end")?;
        if q != b'\'' && q != b'"' {
            return Err(format!(
                "malformed header: expected a string at byte {}",
                self.i
            ));
        }
        let start = self.i + 1;
        let len = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("malformed header: unterminated string")?;
        self.i = start + len + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + len]).into_owned())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        self.skip_ws();
        for (word, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if self.s[self.i..].starts_with(word) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err("malformed header: expected True or False".into())
    }
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            // Python 2 era headers wrote longs as `3L`.
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            if self.s.get(self.i) == Some(&b'L') {
                self.i += 1;
            }
            dims.push(
                digits
                    .parse::<usize>()
                    .map_err(|_| format!("malformed header: bad dimension at byte {start}"))?,
            );
            if !self.eat(b',') {
                self.expect(b')')?;
                return Ok(dims);
            }
        }
    }
}

/// Encodes a version 1.0 header (2.0 when it does not fit), padded so the
/// data starts on a 64-byte boundary as numpy does.
pub fn encode_header(dtype: DType, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {dims}, }}",
        dtype.descr()
    );
    for (version, prefix) in [(1u8, 10usize), (2u8, 12usize)] {
        let unpadded = prefix + dict.len() + 1;
        let total = unpadded.div_ceil(64) * 64;
        let hlen = total - prefix;
        if version == 1 && hlen > u16::MAX as usize {
            continue;
        }
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0]);
        if version == 1 {
            out.extend_from_slice(&(hlen as u16).to_le_bytes());
        } else {
            out.extend_from_slice(&(hlen as u32).to_le_bytes());
        }
        out.extend_from_slice(dict.as_bytes());
        out.resize(total - 1, b' ');
        out.push(b'\n');
        return out;
    }
    unreachable!("a version 2.0 header holds any shape")
}

/// One element of an integer dtype, widened to i128 (`b` holds exactly
/// one element).
pub fn int_at(dtype: DType, b: &[u8]) -> i128 {
    let mut w = [0u8; 8];
    w[..b.len().min(8)].copy_from_slice(&b[..b.len().min(8)]);
    match dtype {
        DType::I64 => i64::from_le_bytes(w) as i128,
        DType::I32 => i32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i128,
        DType::U64 => u64::from_le_bytes(w) as i128,
        DType::U32 => u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as i128,
        _ => w[0] as i128,
    }
}

/// Feature values as f32: float types converted, uint8 (image pixels)
/// scaled to [0, 1].
pub fn features_f32(dtype: DType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; bytes.len() / dtype.size()];
    features_into(dtype, bytes, &mut out);
    out
}

/// [`features_f32`] into a buffer the caller keeps (`out.len()` values).
pub fn features_into(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        DType::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        DType::F64 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                *o = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32;
            }
        }
        _ => {
            for (o, &v) in out.iter_mut().zip(bytes) {
                *o = v as f32 / 255.0;
            }
        }
    }
}

/// Element types that can be written to .npy.
pub trait Element: bytemuck::Pod {
    /// The element's dtype in a header.
    const DTYPE: DType;
}
impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
}
impl Element for u8 {
    const DTYPE: DType = DType::U8;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}

/// Writes a whole array: header, then the elements in C order.
pub fn write_array<T: Element, W: Write + ?Sized>(
    w: &mut W,
    shape: &[usize],
    data: &[T],
) -> std::io::Result<()> {
    w.write_all(&encode_header(T::DTYPE, shape))?;
    w.write_all(bytemuck::cast_slice(data))
}

/// Writes an array to `path` (not atomically; for tests and examples).
pub fn save<T: Element>(path: &Path, shape: &[usize], data: &[T]) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| Error::io(path, e))?);
    write_array(&mut f, shape, data)
        .and_then(|_| f.flush())
        .map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        for shape in [vec![0usize], vec![7], vec![3, 4], vec![100_000, 10]] {
            let bytes = encode_header(DType::F32, &shape);
            assert_eq!(bytes.len() % 64, 0);
            let h = parse_header(Path::new("x.npy"), &bytes, &[DType::F32], "float32").unwrap();
            assert_eq!(h.shape, shape);
            assert_eq!(h.dtype, DType::F32);
            assert_eq!(h.data_offset, bytes.len());
        }
    }

    #[test]
    fn parses_numpy_written_header() {
        // Bytes of np.save(f, np.zeros((2, 3), np.float16)) header, numpy 1.26.
        let dict = b"{'descr': '<f2', 'fortran_order': False, 'shape': (2, 3), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let hlen = 118usize;
        bytes.extend_from_slice(&(hlen as u16).to_le_bytes());
        bytes.extend_from_slice(dict);
        bytes.resize(10 + hlen - 1, b' ');
        bytes.push(b'\n');
        let h = parse_header(Path::new("x.npy"), &bytes, &[DType::F16], "").unwrap();
        assert_eq!(
            (h.dtype, h.shape.as_slice(), h.data_offset),
            (DType::F16, &[2usize, 3][..], 128)
        );
    }

    #[test]
    fn rejects_garbage() {
        let e = parse_header(Path::new("bad.npy"), b"hello world", &[DType::F32], "").unwrap_err();
        assert!(e.to_string().contains("bad.npy"), "{e}");
        let mut bytes = encode_header(DType::F32, &[2, 2]);
        bytes.truncate(30);
        let e = parse_header(Path::new("cut.npy"), &bytes, &[DType::F32], "").unwrap_err();
        assert!(e.to_string().contains("cut short"), "{e}");
    }
}
