//! The element type of a stored matrix, as `.npy` and HDF5 files describe
//! it: the one type every reader, `inspect` and the summaries use.

use std::fmt;

use hdf5::types::{FloatSize, IntSize, TypeDescriptor};

/// A numeric element type, by its width in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numeric {
    /// IEEE float of 2, 4 or 8 bytes.
    Float(usize),
    /// Signed integer of 1, 2, 4 or 8 bytes.
    Int(usize),
    /// Unsigned integer of 1, 2, 4 or 8 bytes.
    Uint(usize),
}

impl Numeric {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Numeric::Float(n) | Numeric::Int(n) | Numeric::Uint(n) => n,
        }
    }
}

impl fmt::Display for Numeric {
    /// NumPy's name of the type (`float32`, `int64`, ...).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Numeric::Float(n) => write!(f, "float{}", n * 8),
            Numeric::Int(n) => write!(f, "int{}", n * 8),
            Numeric::Uint(n) => write!(f, "uint{}", n * 8),
        }
    }
}

/// The element type of a dataset: numeric (nmflow reads it as numbers), or
/// anything else, as the file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dtype {
    /// Integers or floats.
    Numeric(Numeric),
    /// Strings, compounds, references, booleans, ...: not factorizable.
    Other(String),
}

impl Dtype {
    /// The type of an HDF5 dataset or attribute.
    pub(crate) fn of_hdf5(descriptor: &hdf5::Result<TypeDescriptor>) -> Self {
        let bytes = |size: IntSize| size as usize;
        match descriptor {
            Ok(TypeDescriptor::Float(size)) => Dtype::Numeric(Numeric::Float(match size {
                FloatSize::U4 => 4,
                FloatSize::U8 => 8,
                #[allow(unreachable_patterns)]
                _ => 2,
            })),
            Ok(TypeDescriptor::Integer(size)) => Dtype::Numeric(Numeric::Int(bytes(*size))),
            Ok(TypeDescriptor::Unsigned(size)) => Dtype::Numeric(Numeric::Uint(bytes(*size))),
            Ok(other) => Dtype::Other(other.to_string()),
            Err(_) => Dtype::Other("unsupported type".to_owned()),
        }
    }

    /// Integers or floats.
    pub fn is_numeric(&self) -> bool {
        matches!(self, Dtype::Numeric(_))
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dtype::Numeric(n) => n.fmt(f),
            Dtype::Other(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_numpys_and_hdf5s() {
        for (descriptor, name) in [
            (TypeDescriptor::Float(FloatSize::U4), "float32"),
            (TypeDescriptor::Float(FloatSize::U8), "float64"),
            (TypeDescriptor::Integer(IntSize::U2), "int16"),
            (TypeDescriptor::Unsigned(IntSize::U8), "uint64"),
            (TypeDescriptor::VarLenUnicode, "unicode (var len)"),
        ] {
            let dtype = Dtype::of_hdf5(&Ok(descriptor.clone()));
            assert_eq!(dtype.to_string(), name);
            assert_eq!(dtype.to_string(), descriptor.to_string());
            assert_eq!(dtype.is_numeric(), name != "unicode (var len)");
        }
    }
}
