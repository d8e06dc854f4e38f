//! Figures of nmflow fits and sweeps, as PNG and SVG files, and one
//! self-contained HTML page embedding them.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (the `dejavu`
//! crate), so rendering needs no display and no system fonts; the HTML
//! page embeds the PNGs as data URIs and loads nothing from the network.
//! Every figure has a title, axis labels and, where colours carry meaning,
//! a legend or a colour bar.
#![deny(missing_docs)]

mod figures;
mod html;
mod programs;
mod text;

use std::path::{Path, PathBuf};

use nmflow_io::atomic::{self, Overwrite};
use plotters::coord::Shift;
use plotters::prelude::*;

pub use figures::{
    ConsensusHeatmap, ErrorCurves, PcaPanels, STABLE, SampleLabels, StabilityCurves, SweepErrors,
    TimeToError, TopColumns, WHeatmap, order_by_cluster, suggest_k,
};
pub use html::{Section, html_page};
pub use programs::{ProgramGene, RankBy, programs_tsv, specificity, top_genes};

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Drawing a figure failed.
    #[error("drawing {figure}: {reason}")]
    Draw {
        /// The figure's file stem.
        figure: String,
        /// What the drawing library reported.
        reason: String,
    },
    /// Writing a file by the write protocol failed.
    #[error(transparent)]
    Write(nmflow_io::IoError),
    /// Writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The embedded font could not be registered.
    #[error("the embedded font could not be loaded")]
    Font,
}

/// A figure that can be drawn on any plotters backend.
pub trait Plot {
    /// Title of the figure.
    fn title(&self) -> String;
    /// Size in pixels.
    fn size(&self) -> (u32, u32) {
        (900, 560)
    }
    /// Draws the figure on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

/// A figure written to disk.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem (`error_curve` for `error_curve.png` and `.svg`).
    pub stem: String,
    /// Title.
    pub title: String,
    /// The PNG file.
    pub png: PathBuf,
    /// The SVG file.
    pub svg: PathBuf,
}

/// Registers the embedded font as the `sans-serif` family (once).
pub fn init_fonts() -> Result<(), ReportError> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
            && plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold())
                .is_ok()
    });
    if ok { Ok(()) } else { Err(ReportError::Font) }
}

/// Draws `plot` as `dir/stem.png` and `dir/stem.svg`, each written to a
/// temporary name first and renamed into place.
pub fn render<P: Plot>(plot: &P, dir: &Path, stem: &str) -> Result<Figure, ReportError> {
    init_fonts()?;
    let draw_err = |reason: String| ReportError::Draw {
        figure: stem.to_owned(),
        reason,
    };
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let size = plot.size();
    let mut pixels = vec![0u8; 3 * size.0 as usize * size.1 as usize];
    {
        let root = text::Glyphs(BitMapBackend::with_buffer(&mut pixels, size)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        plot.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    write_atomically(&png, &encode_png(&pixels, size).map_err(draw_err)?)?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, plot.size()).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        plot.draw(&root).map_err(draw_err)?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    write_atomically(&svg, text.as_bytes())?;
    Ok(Figure {
        stem: stem.to_owned(),
        title: plot.title(),
        png,
        svg,
    })
}

/// RGB pixels as a PNG file's bytes, compressed as much as the `png` crate
/// does, rows unfiltered: figures are flat colour, text and lines, which
/// compress best unfiltered (an error curve: 160 KB with the plotting
/// library's fast default, 26 KB so), keeping the HTML page that embeds
/// them small.
fn encode_png(pixels: &[u8], (width, height): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    encoder.set_filter(png::FilterType::NoFilter);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(pixels).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Writes `bytes` to `path` by nmflow's write protocol
/// ([`nmflow_io::atomic`]), replacing an existing file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    atomic::write_bytes(path, Overwrite::Replace, bytes).map_err(ReportError::Write)
}
