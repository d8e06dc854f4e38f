//! HDF5 datasets as row sources.
//!
//! A 2-D dataset of any integer or float type, contiguous or chunked, with
//! any filter the library (and the built-in LZF filter) can decode, is read
//! as row hyperslabs converted to f32 by the library. The preferred block
//! height is the dataset's chunk height, so that each chunk is decoded once
//! per pass. A contiguous, unfiltered dataset is instead used in place from
//! a memory map ([`open_dense`], [`crate::mapped`]): no read, no copy, and
//! no block cache.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hdf5::Dataset;
use ndarray::{Array2, s};
use nmflow_core::{RowBlock, RowSource, SourceError};

use crate::catalog::{DatasetInfo, describe, list_matrices};
use crate::dtype::{Dtype, Numeric};
use crate::error::IoError;
use crate::mapped::{Elements, Extent, MappedMatrix, map_file};

/// The dataset nmflow factorizes when a file holds several and none is named.
pub(crate) const DEFAULT_DATASET: &str = "/X";

/// A 2-D numeric HDF5 dataset read in row blocks.
#[derive(Debug)]
pub(crate) struct Hdf5Source {
    path: PathBuf,
    /// Open while passes read it; closed (with the file and the library's
    /// caches) between them, and opened again by the next read.
    dataset: Option<Dataset>,
    info: DatasetInfo,
    buf: Array2<f32>,
}

impl Hdf5Source {
    /// Opens `dataset` of the file at `path`, or, when `dataset` is `None`,
    /// `/X` if it exists, else the only 2-D numeric dataset of the file.
    pub(crate) fn open(path: &Path, dataset: Option<&str>) -> Result<Self, IoError> {
        let ds = open_matrix_dataset(path, dataset)?;
        let info = describe(&ds);
        Ok(Self {
            path: path.to_path_buf(),
            dataset: Some(ds),
            info,
            buf: Array2::zeros((0, 0)),
        })
    }

    /// The dataset used in place from a memory map, when its rows lie in
    /// the file in order: contiguous, or chunked in whole rows with every
    /// chunk allocated (as a dataset written row block by row block is);
    /// unfiltered, not in external files, integers or floats of 4 or 8 bytes in one byte
    /// order, in a file without a user block; and its first and last rows
    /// read through the library equal the mapped ones. `None` otherwise
    /// (the dataset is then read through the library).
    fn mapped(&mut self) -> Option<MappedMatrix> {
        let ds = self.dataset.as_ref()?;
        let dtype = match self.info.dtype {
            Dtype::Numeric(n @ (Numeric::Float(4 | 8) | Numeric::Int(_) | Numeric::Uint(_))) => n,
            _ => return None,
        };
        let dcpl = ds.dcpl().ok()?;
        if !dcpl.filters().is_empty()
            || !dcpl.external().is_empty()
            || ds.file().ok()?.fcpl().ok()?.userblock() != 0
        {
            return None;
        }
        let shape = (self.n_rows(), self.n_cols());
        let extents = match dcpl.layout() {
            hdf5::plist::dataset_create::Layout::Contiguous => vec![Extent {
                first_row: 0,
                offset: usize::try_from(ds.offset()?).ok()?,
            }],
            hdf5::plist::dataset_create::Layout::Chunked => {
                row_extents(ds, dcpl.chunk()?, shape, dtype.size())?
            }
            _ => return None,
        };
        let big_endian = match ds.dtype().ok()?.byte_order() {
            hdf5::datatype::ByteOrder::LittleEndian => false,
            hdf5::datatype::ByteOrder::BigEndian => true,
            _ => return None,
        };
        let elements = Elements {
            dtype,
            big_endian,
            fortran_order: false,
        };
        let mut mapped = MappedMatrix::new(map_file(&self.path).ok()?, elements, shape, extents)
            .ok()?
            .with_preferred_block_rows(self.preferred_block_rows());
        let n_rows = shape.0;
        for rows in [0..n_rows.min(1), n_rows.saturating_sub(1)..n_rows] {
            let RowBlock::Dense(read) = self.block(rows.clone()).ok()? else {
                return None;
            };
            let read = read.to_owned();
            let RowBlock::Dense(in_map) = mapped.block(rows).ok()? else {
                return None;
            };
            if in_map.dim() != read.dim()
                || !in_map
                    .iter()
                    .zip(&read)
                    .all(|(a, b)| a.to_bits() == b.to_bits())
            {
                return None;
            }
        }
        Some(mapped)
    }
}

/// The runs of adjacent chunks of a dataset chunked in whole rows
/// (`chunk` is `[rows, n_cols]`) when every chunk is allocated and
/// unfiltered: each run's rows are stored as in a contiguous dataset (the
/// last chunk's padding after them).
fn row_extents(
    ds: &Dataset,
    chunk: Vec<usize>,
    (n_rows, n_cols): (usize, usize),
    elem_size: usize,
) -> Option<Vec<Extent>> {
    let &[chunk_rows, chunk_cols] = chunk.as_slice() else {
        return None;
    };
    if chunk_cols != n_cols || chunk_rows == 0 {
        return None;
    }
    let chunk_bytes = chunk_rows.checked_mul(n_cols)?.checked_mul(elem_size)?;
    let mut extents: Vec<Extent> = Vec::new();
    // Where the next chunk lies if it continues the current run.
    let mut follows = None;
    for first_row in (0..n_rows).step_by(chunk_rows) {
        let coord: [hdf5_sys::h5::hsize_t; 2] = [first_row as _, 0];
        let (mut mask, mut addr, mut size) = (0, 0, 0);
        let id = ds.id();
        // SAFETY: `coord` holds the dataset's rank (2) coordinates; the
        // library writes one value into each of the three out-parameters.
        let status = hdf5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dget_chunk_info_by_coord(
                id,
                coord.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            )
        });
        if status < 0
            || addr == hdf5_sys::h5::HADDR_UNDEF
            || usize::try_from(size).ok()? != chunk_bytes
            || mask != 0
        {
            return None;
        }
        let offset = usize::try_from(addr).ok()?;
        if follows != Some(offset) {
            extents.push(Extent { first_row, offset });
        }
        follows = offset.checked_add(chunk_bytes);
    }
    Some(extents)
}

/// Opens a dense dataset as [`Hdf5Source::open`] does, used in place from
/// a memory map when it can be ([`Hdf5Source`]'s `mapped`); with whether
/// it is, and what the dataset is.
pub(crate) fn open_dense(
    path: &Path,
    dataset: Option<&str>,
) -> Result<(Box<dyn RowSource + Send>, bool, DatasetInfo), IoError> {
    let mut source = Hdf5Source::open(path, dataset)?;
    let info = source.info.clone();
    Ok(match source.mapped() {
        Some(mapped) => (Box::new(mapped), true, info),
        None => (Box::new(source), false, info),
    })
}

/// Opens and checks the dataset to factorize.
pub(crate) fn open_matrix_dataset(path: &Path, dataset: Option<&str>) -> Result<Dataset, IoError> {
    let file =
        hdf5::File::open(path).map_err(|e| IoError::hdf5(path, "opening the HDF5 file", e))?;
    let name = match dataset {
        Some(name) => name.to_owned(),
        None if file.link_exists(DEFAULT_DATASET.trim_start_matches('/')) => {
            DEFAULT_DATASET.to_owned()
        }
        None => {
            let matrices = list_matrices(path)?;
            match matrices.as_slice() {
                [only] => only.path.clone(),
                _ => {
                    return Err(IoError::AmbiguousDataset {
                        path: path.to_path_buf(),
                        available: matrices.into_iter().map(|m| m.path).collect(),
                    });
                }
            }
        }
    };
    let ds = match file.dataset(&name) {
        Ok(ds) => ds,
        Err(_) => {
            return Err(IoError::DatasetNotFound {
                path: path.to_path_buf(),
                dataset: name,
                available: list_matrices(path)?.into_iter().map(|m| m.path).collect(),
            });
        }
    };
    let info = describe(&ds);
    if !info.dtype.is_numeric() {
        return Err(IoError::NotNumeric {
            path: path.to_path_buf(),
            dataset: info.path,
            dtype: info.dtype.to_string(),
        });
    }
    if info.shape.len() != 2 {
        return Err(IoError::NotMatrix {
            path: path.to_path_buf(),
            dataset: info.path,
            shape: info.shape,
        });
    }
    Ok(ds)
}

impl RowSource for Hdf5Source {
    fn n_rows(&self) -> usize {
        self.info.shape[0]
    }

    fn n_cols(&self) -> usize {
        self.info.shape[1]
    }

    fn preferred_block_rows(&self) -> Option<usize> {
        self.info.chunk.as_ref().and_then(|c| c.first().copied())
    }

    fn done_reading(&mut self) {
        self.buf = Array2::zeros((0, 0));
        self.dataset = None;
    }

    fn block(&mut self, rows: Range<usize>) -> Result<RowBlock<'_>, SourceError> {
        let (start, end) = (rows.start, rows.end);
        let dataset = match self.dataset.take() {
            Some(ds) => ds,
            None => open_matrix_dataset(&self.path, Some(&self.info.path))?,
        };
        let dataset = self.dataset.insert(dataset);
        self.buf = dataset
            .read_slice_2d::<f32, _>(s![start..end, ..])
            .map_err(|e| {
                IoError::hdf5(
                    &self.path,
                    format!("reading dataset '{}'", self.info.path),
                    e,
                )
            })?;
        Ok(RowBlock::Dense(self.buf.view()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Every block of `rows` rows, and one across all of them, from `path`
    /// opened by [`open_dense`]; with whether it was mapped.
    fn blocks(path: &Path, step: usize) -> (bool, Vec<Array2<f32>>) {
        let (mut source, mapped, _) = open_dense(path, Some("/X")).expect("open");
        let n = source.n_rows();
        let mut ranges: Vec<Range<usize>> =
            (0..n).step_by(step).map(|s| s..(s + step).min(n)).collect();
        ranges.push(1..n);
        let out = ranges
            .into_iter()
            .map(|rows| match source.block(rows).expect("block") {
                RowBlock::Dense(v) => v.to_owned(),
                RowBlock::Csr(_) => panic!("dense"),
            })
            .collect();
        (mapped, out)
    }

    fn expected(x: &Array2<f32>, step: usize) -> Vec<Array2<f32>> {
        let n = x.nrows();
        let mut out: Vec<Array2<f32>> = (0..n)
            .step_by(step)
            .map(|s| x.slice(s![s..(s + step).min(n), ..]).to_owned())
            .collect();
        out.push(x.slice(s![1..n, ..]).to_owned());
        out
    }

    #[test]
    fn contiguous_and_row_chunked_datasets_are_mapped_and_read_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let x = Array2::from_shape_fn((11, 5), |(i, j)| (i * 5 + j) as f32 * 0.25);
        let write = |name: &str, build: &dyn Fn(hdf5::DatasetBuilder) -> hdf5::DatasetBuilder| {
            let path = dir.path().join(name);
            let file = hdf5::File::create(&path).expect("create");
            build(file.new_dataset_builder())
                .with_data(&x)
                .create("X")
                .expect("dataset");
            path
        };
        let contiguous = write("contiguous.h5", &|b| b);
        let chunked = write("chunked.h5", &|b| b.chunk((3, 5)));
        let gzip = write("gzip.h5", &|b| b.chunk((3, 5)).deflate(4));
        let narrow = write("narrow.h5", &|b| b.chunk((3, 2)));
        for (path, mapped) in [
            (contiguous, true),
            (chunked, true),
            (gzip, false),
            (narrow, false),
        ] {
            for step in [1, 3, 4, 11] {
                let (was_mapped, got) = blocks(&path, step);
                assert_eq!(was_mapped, mapped, "{}", path.display());
                assert_eq!(got, expected(&x, step), "{} step {step}", path.display());
            }
        }
        // A chunked dataset written block by block, with other datasets
        // between its chunks: several extents, blocks across them copied.
        let path = dir.path().join("interleaved.h5");
        let file = hdf5::File::create(&path).expect("create");
        let ds = file
            .new_dataset::<f32>()
            .chunk((2, 5))
            .shape((11, 5))
            .create("X")
            .expect("dataset");
        for start in (0..11).step_by(2) {
            let end = (start + 2).min(11);
            ds.write_slice(&x.slice(s![start..end, ..]), s![start..end, ..])
                .expect("write");
            file.new_dataset_builder()
                .with_data(&[start as u32; 100])
                .create(format!("pad{start}").as_str())
                .expect("pad");
        }
        let extents = row_extents(&ds, vec![2, 5], (11, 5), 4).expect("extents");
        assert!(extents.len() > 1, "{extents:?}");
        drop((ds, file));
        for step in [1, 2, 3, 11] {
            let (mapped, got) = blocks(&path, step);
            assert!(mapped);
            assert_eq!(got, expected(&x, step), "interleaved step {step}");
        }
    }

    #[test]
    fn other_element_types_are_mapped_and_converted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("u16.h5");
        let x = Array2::from_shape_fn((6, 4), |(i, j)| (i * 40 + j) as u16);
        hdf5::File::create(&path)
            .expect("create")
            .new_dataset_builder()
            .with_data(&x)
            .create("X")
            .expect("dataset");
        let (mapped, got) = blocks(&path, 4);
        assert!(mapped);
        assert_eq!(got, expected(&x.mapv(f32::from), 4));
    }
}
