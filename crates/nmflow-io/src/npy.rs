//! `.npy` files as row sources, memory-mapped (the crate's mapped matrix: C and
//! Fortran order, every numeric dtype of either byte order, little-endian
//! f32 used in place).

use std::ops::Range;
use std::path::Path;

use nmflow_core::{RowBlock, RowSource, SourceError};

pub use crate::dtype::Numeric;
use crate::error::IoError;
use crate::mapped::{Elements, Extent, MappedMatrix, map_file};

const MAGIC: &[u8] = b"\x93NUMPY";

/// A value type nmflow writes into `.npy` files (little-endian).
pub trait NpyValue: bytemuck::Pod {
    /// NumPy's description of the type.
    const DESCR: &'static str;
}

impl NpyValue for f32 {
    const DESCR: &'static str = "<f4";
}

impl NpyValue for u32 {
    const DESCR: &'static str = "<u4";
}

/// The header of a C-order `.npy` file (version 1.0) of `shape` and
/// `descr` (e.g. `<f4`), padded so the data start on a 64-byte boundary:
/// the one writer of the format that [`NpySource`] reads.
pub fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims = match shape {
        [n] => format!("({n},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    dict_bytes(&format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}"
    ))
}

/// The magic, version 1.0, length and `dict` padded with spaces and a
/// newline to a 64-byte boundary.
fn dict_bytes(dict: &str) -> Vec<u8> {
    let mut text = dict.to_owned();
    while !(MAGIC.len() + 4 + text.len() + 1).is_multiple_of(64) {
        text.push(' ');
    }
    text.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend([1, 0]);
    bytes.extend((text.len() as u16).to_le_bytes());
    bytes.extend(text.as_bytes());
    bytes
}

/// Writes `values` as `.npy` data: little-endian, in the order given.
pub fn write_values<T: NpyValue>(
    out: &mut impl std::io::Write,
    values: &[T],
) -> std::io::Result<()> {
    if cfg!(target_endian = "little") {
        out.write_all(bytemuck::cast_slice(values))
    } else {
        for v in values {
            let mut bytes = bytemuck::bytes_of(v).to_vec();
            bytes.reverse();
            out.write_all(&bytes)?;
        }
        Ok(())
    }
}

/// Writes a whole C-order `.npy` file of `values` with `shape` (their
/// product is `values.len()`).
pub fn write_npy<T: NpyValue>(path: &Path, shape: &[usize], values: &[T]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    std::io::Write::write_all(&mut out, &header_bytes(T::DESCR, shape))?;
    write_values(&mut out, values)?;
    std::io::Write::flush(&mut out)
}

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyHeader {
    /// Element type.
    pub dtype: Numeric,
    /// Whether elements are big-endian.
    pub big_endian: bool,
    /// Column-major storage.
    pub fortran_order: bool,
    /// Array shape.
    pub shape: Vec<usize>,
    /// Offset of the data from the start of the file.
    pub data_offset: usize,
}

/// Parses the header at the start of `bytes`.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err("truncated .npy header".into());
            }
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (len as usize, 12)
        }
        other => return Err(format!("unsupported .npy format version {other}")),
    };
    let end = start + header_len;
    let text = bytes
        .get(start..end)
        .ok_or_else(|| "truncated .npy header".to_owned())?;
    let text = std::str::from_utf8(text).map_err(|_| "the .npy header is not text".to_owned())?;
    let descr = dict_value(text, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, dtype) = parse_descr(descr)?;
    let fortran =
        dict_value(text, "fortran_order").ok_or("the .npy header has no 'fortran_order'")?;
    let fortran_order = match fortran.trim() {
        "True" => true,
        "False" => false,
        other => return Err(format!("bad fortran_order '{other}' in the .npy header")),
    };
    let shape_text = dict_value(text, "shape").ok_or("the .npy header has no 'shape'")?;
    let shape = shape_text
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format!("bad shape {shape_text} in the .npy header"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NpyHeader {
        dtype,
        big_endian,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// The text of the value of `key` in a Python dict literal of literals.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let quoted = [format!("'{key}'"), format!("\"{key}\"")];
    let at = quoted
        .iter()
        .find_map(|q| text.find(q.as_str()).map(|i| i + q.len()))?;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else if let Some(stripped) = rest.strip_prefix('\'') {
        stripped.find('\'')? + 2
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

fn parse_descr(descr: &str) -> Result<(bool, Numeric), String> {
    let bad = || format!("unsupported .npy dtype '{descr}' (numeric types only)");
    let mut chars = descr.chars();
    let order = chars.next().ok_or_else(bad)?;
    let kind = chars.next().ok_or_else(bad)?;
    let size: usize = chars.as_str().parse().map_err(|_| bad())?;
    let big_endian = match order {
        '<' | '|' | '=' => false,
        '>' => true,
        _ => return Err(bad()),
    };
    let dtype = match (kind, size) {
        ('f', 4 | 8) => Numeric::Float(size),
        ('i', 1 | 2 | 4 | 8) => Numeric::Int(size),
        ('u', 1 | 2 | 4 | 8) => Numeric::Uint(size),
        _ => return Err(bad()),
    };
    Ok((big_endian, dtype))
}

/// A memory-mapped `.npy` matrix.
#[derive(Debug)]
pub struct NpySource {
    header: NpyHeader,
    matrix: MappedMatrix,
}

impl NpySource {
    /// Maps `path` and checks its header and length.
    pub fn open(path: &Path) -> Result<Self, IoError> {
        let npy_err = |reason: String| IoError::Npy {
            path: path.to_path_buf(),
            reason,
        };
        let map = map_file(path)?;
        let header = parse_header(&map).map_err(npy_err)?;
        let (n_rows, n_cols) = match header.shape.as_slice() {
            &[r, c] => (r, c),
            other => {
                return Err(IoError::NotMatrix {
                    path: path.to_path_buf(),
                    dataset: "(npy array)".into(),
                    shape: other.to_vec(),
                });
            }
        };
        let elements = Elements {
            dtype: header.dtype,
            big_endian: header.big_endian,
            fortran_order: header.fortran_order,
        };
        let extent = Extent {
            first_row: 0,
            offset: header.data_offset,
        };
        let matrix = MappedMatrix::new(map, elements, (n_rows, n_cols), vec![extent]).map_err(|available| {
            npy_err(format!(
                "the file is truncated: the header promises {} bytes of {} data for a {n_rows} × {n_cols} array, the file holds {available}",
                elements.n_bytes((n_rows, n_cols)).unwrap_or(usize::MAX),
                header.dtype
            ))
        })?;
        Ok(Self { header, matrix })
    }

    /// The header.
    pub fn header(&self) -> &NpyHeader {
        &self.header
    }
}

impl RowSource for NpySource {
    fn n_rows(&self) -> usize {
        self.matrix.n_rows()
    }

    fn n_cols(&self) -> usize {
        self.matrix.n_cols()
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        self.matrix.block(rows)
    }

    fn keep_resident(&mut self) {
        self.matrix.keep_resident();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(dict: &str) -> Vec<u8> {
        dict_bytes(dict)
    }

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.npy");
        let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        write_npy(&path, &[4, 3], &x).expect("write");
        let mut source = NpySource::open(&path).expect("open");
        assert_eq!(source.header().shape, vec![4, 3]);
        assert_eq!(source.header().data_offset % 64, 0);
        let RowBlock::Dense(view) = source.block(1..3).expect("block") else {
            panic!("dense");
        };
        assert_eq!(view.iter().copied().collect::<Vec<_>>(), x[3..9].to_vec());
        let labels = dir.path().join("l.npy");
        write_npy(&labels, &[3], &[1u32, 2, 3]).expect("write");
        let header = parse_header(&std::fs::read(&labels).expect("read")).expect("parse");
        assert_eq!((header.shape, header.dtype), (vec![3], Numeric::Uint(4)));
    }

    #[test]
    fn parses_numpy_headers() {
        let h = parse_header(&header(
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }",
        ))
        .expect("header");
        assert_eq!(h.dtype, Numeric::Float(4));
        assert!(!h.fortran_order && !h.big_endian);
        assert_eq!(h.shape, vec![3, 4]);
        assert_eq!(h.data_offset % 64, 0);
        let h = parse_header(&header(
            "{'descr': '>i2', 'fortran_order': True, 'shape': (5,), }",
        ))
        .expect("header");
        assert_eq!(
            (h.dtype, h.big_endian, h.fortran_order),
            (Numeric::Int(2), true, true)
        );
        assert_eq!(h.shape, vec![5]);
    }

    #[test]
    fn rejects_non_numeric_dtypes() {
        let err = parse_header(&header(
            "{'descr': '<U8', 'fortran_order': False, 'shape': (3, 4), }",
        ))
        .unwrap_err();
        assert!(err.contains("unsupported .npy dtype"), "{err}");
        assert!(parse_header(b"PK\x03\x04 zip").is_err());
    }
}
