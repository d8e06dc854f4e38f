//! The h5ad layout of anndata before 0.7 (files of 2017–2019, and scanpy's
//! `pbmc68k_reduced` example): `obs` and `var` are compound datasets whose
//! field `index` (or the first field) holds the names and whose other
//! fields are columns (categoricals as integer codes, their categories in
//! `uns/<column>_categories`); `raw` lives at the root as `raw.X` (a sparse
//! group with `h5sparse_format`), `raw.var` and `raw.varm`. Read as
//! anndata's own legacy reader does (`read_dataframe_legacy`,
//! `_read_legacy_raw`).

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};
use hdf5::{Dataset, File};

/// One field of every record of a compound dataset.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Column {
    /// Fixed-length strings (padding stripped).
    Strings(Vec<String>),
    /// Integers (categorical codes among them).
    Ints(Vec<i64>),
    /// Floats.
    Floats(Vec<f64>),
}

/// Whether `name` of `file` is a legacy compound dataframe.
pub(crate) fn is_compound_frame(file: &File, name: &str) -> bool {
    file.dataset(name)
        .ok()
        .and_then(|d| d.dtype().ok())
        .and_then(|t| t.to_descriptor().ok())
        .is_some_and(|t| matches!(t, TypeDescriptor::Compound(_)))
}

/// The names of the fields of a compound dataset, in order.
pub(crate) fn field_names(ds: &Dataset) -> hdf5::Result<Vec<String>> {
    match ds.dtype()?.to_descriptor()? {
        TypeDescriptor::Compound(c) => Ok(c.fields.into_iter().map(|f| f.name).collect()),
        other => Err(hdf5::Error::from(format!(
            "expected a compound dataset, found {other}"
        ))),
    }
}

/// The row names of a legacy frame: the field `index`, else the first.
pub(crate) fn frame_index(ds: &Dataset) -> hdf5::Result<Vec<String>> {
    let fields = field_names(ds)?;
    let name = if fields.iter().any(|f| f == "index") {
        "index".to_owned()
    } else {
        fields
            .first()
            .cloned()
            .ok_or_else(|| hdf5::Error::from("a compound dataset without fields"))?
    };
    match read_field(ds, &name)? {
        Column::Strings(s) => Ok(s),
        Column::Ints(v) => Ok(v.iter().map(i64::to_string).collect()),
        Column::Floats(v) => Ok(v.iter().map(f64::to_string).collect()),
    }
}

/// Reads the field `name` of every record of the compound dataset `ds`.
/// The records are read with the file's own type (no conversion) and the
/// field decoded from its bytes (little-endian, as every anndata file is).
pub(crate) fn read_field(ds: &Dataset, name: &str) -> hdf5::Result<Column> {
    let dtype = ds.dtype()?;
    let TypeDescriptor::Compound(compound) = dtype.to_descriptor()? else {
        return Err(hdf5::Error::from("not a compound dataset"));
    };
    let field = compound
        .fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| hdf5::Error::from(format!("no field '{name}'")))?;
    let size = compound.size;
    let buf = crate::strings::read_file_type(ds, false)?;
    let records = buf.chunks_exact(size.max(1));
    let at =
        |raw: &[u8], width: usize| -> Vec<u8> { raw[field.offset..field.offset + width].to_vec() };
    let int = |bytes: Vec<u8>, signed: bool| -> i64 {
        let mut wide = [0u8; 8];
        let fill = if signed && bytes.last().is_some_and(|b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        wide.fill(fill);
        wide[..bytes.len()].copy_from_slice(&bytes);
        i64::from_le_bytes(wide)
    };
    Ok(match &field.ty {
        TypeDescriptor::FixedAscii(width) | TypeDescriptor::FixedUnicode(width) => Column::Strings(
            records
                .map(|raw| {
                    let bytes = at(raw, *width);
                    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
                    String::from_utf8_lossy(&bytes[..end])
                        .trim_end_matches(' ')
                        .to_owned()
                })
                .collect(),
        ),
        TypeDescriptor::Integer(w) | TypeDescriptor::Unsigned(w) => {
            let signed = matches!(field.ty, TypeDescriptor::Integer(_));
            let width = int_width(*w);
            Column::Ints(records.map(|raw| int(at(raw, width), signed)).collect())
        }
        TypeDescriptor::Boolean => {
            Column::Ints(records.map(|raw| i64::from(raw[field.offset])).collect())
        }
        TypeDescriptor::Float(FloatSize::U4) => Column::Floats(
            records
                .map(|raw| {
                    let b = at(raw, 4);
                    f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                })
                .collect(),
        ),
        TypeDescriptor::Float(FloatSize::U8) => Column::Floats(
            records
                .map(|raw| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&at(raw, 8));
                    f64::from_le_bytes(b)
                })
                .collect(),
        ),
        other => {
            return Err(hdf5::Error::from(format!(
                "field '{name}' has the type {other}, not strings or numbers"
            )));
        }
    })
}

fn int_width(size: IntSize) -> usize {
    match size {
        IntSize::U1 => 1,
        IntSize::U2 => 2,
        IntSize::U4 => 4,
        IntSize::U8 => 8,
    }
}
