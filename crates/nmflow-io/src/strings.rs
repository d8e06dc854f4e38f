//! Reading strings as single-cell files store them: variable-length UTF-8
//! or ASCII, and fixed-length null- or space-padded byte strings, in
//! datasets and in attributes.

use hdf5::types::{TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Attribute, Container, Dataset, Location};

/// The strings of a 1-D (or scalar) string dataset.
pub(crate) fn read_string_dataset(ds: &Dataset) -> hdf5::Result<Vec<String>> {
    read_strings(ds, false)
}

/// The string value(s) of an attribute.
pub(crate) fn read_string_attr(attr: &Attribute) -> hdf5::Result<Vec<String>> {
    read_strings(attr, true)
}

/// The first string of attribute `name` of `loc`, if it exists and is a string.
pub(crate) fn string_attr(loc: &Location, name: &str) -> Option<String> {
    let attr = loc.attr(name).ok()?;
    read_string_attr(&attr).ok()?.into_iter().next()
}

/// Whether a container holds strings.
pub(crate) fn is_string(obj: &Container) -> bool {
    matches!(
        obj.dtype().and_then(|t| t.to_descriptor()),
        Ok(TypeDescriptor::VarLenUnicode
            | TypeDescriptor::VarLenAscii
            | TypeDescriptor::FixedAscii(_)
            | TypeDescriptor::FixedUnicode(_))
    )
}

fn read_strings(obj: &Container, is_attr: bool) -> hdf5::Result<Vec<String>> {
    match obj.dtype()?.to_descriptor()? {
        // The library's `as_str` trusts the bytes; a file may hold invalid
        // UTF-8, which is refused here with the entry's position.
        TypeDescriptor::VarLenUnicode => obj
            .read_raw::<VarLenUnicode>()?
            .iter()
            .enumerate()
            .map(|(i, s)| utf8(i, s.as_bytes()))
            .collect(),
        TypeDescriptor::VarLenAscii => obj
            .read_raw::<VarLenAscii>()?
            .iter()
            .enumerate()
            .map(|(i, s)| utf8(i, s.as_bytes()))
            .collect(),
        TypeDescriptor::FixedAscii(size) | TypeDescriptor::FixedUnicode(size) => {
            read_fixed(obj, size, is_attr)
        }
        other => Err(hdf5::Error::from(format!(
            "expected strings, found {other}"
        ))),
    }
}

/// Every element of a dataset (or attribute) read with the file's own type,
/// without conversion, as bytes: `size × element size` of them.
pub(crate) fn read_file_type(obj: &Container, is_attr: bool) -> hdf5::Result<Vec<u8>> {
    let dtype = obj.dtype()?;
    let mut buf = vec![0u8; obj.size() * dtype.size()];
    if buf.is_empty() {
        return Ok(buf);
    }
    let (obj_id, type_id) = (obj.id(), dtype.id());
    let ptr = buf.as_mut_ptr().cast();
    // SAFETY: `buf` holds every element at exactly the file type's size, and
    // the memory type is the file type, so the library writes that many
    // bytes.
    let status = hdf5::sync::sync(|| unsafe {
        if is_attr {
            hdf5_sys::h5a::H5Aread(obj_id, type_id, ptr)
        } else {
            hdf5_sys::h5d::H5Dread(
                obj_id,
                type_id,
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5s::H5S_ALL,
                hdf5_sys::h5p::H5P_DEFAULT,
                ptr,
            )
        }
    });
    if status < 0 {
        return Err(hdf5::Error::from(format!(
            "reading '{}' failed",
            obj.name()
        )));
    }
    Ok(buf)
}

fn utf8(idx: usize, bytes: &[u8]) -> hdf5::Result<String> {
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
        hdf5::Error::from(format!(
            "entry {idx} is not valid UTF-8 ({e}): {}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

/// Reads fixed-length strings with the file's own type (no conversion) and
/// strips their padding.
fn read_fixed(obj: &Container, size: usize, is_attr: bool) -> hdf5::Result<Vec<String>> {
    let n = obj.size();
    if n == 0 || size == 0 {
        return Ok(vec![String::new(); n]);
    }
    let buf = read_file_type(obj, is_attr)?;
    Ok(buf
        .chunks_exact(size)
        .map(|raw| {
            let end = raw.iter().position(|&b| b == 0).unwrap_or(size);
            String::from_utf8_lossy(&raw[..end])
                .trim_end_matches(' ')
                .to_owned()
        })
        .collect())
}
