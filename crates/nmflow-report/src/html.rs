//! The HTML page: sections of parameter tables and figures, every PNG
//! embedded as a data URI, links to the SVG files beside the page.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::{Figure, ReportError};

/// A part of the page.
#[derive(Debug, Clone, Default)]
pub struct Section {
    /// Heading.
    pub heading: String,
    /// A table of (name, value) rows shown before the figures.
    pub table: Vec<(String, String)>,
    /// A second table with a header row (e.g. the sweep's per-k scores).
    pub grid: Option<(Vec<String>, Vec<Vec<String>>)>,
    /// Figures.
    pub figures: Vec<Figure>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page: `title`, then every section. Reads the PNG files to embed
/// them.
pub fn html_page(title: &str, sections: &[Section]) -> Result<String, ReportError> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{t}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}}\
         figure{{margin:1.5em 0}} img{{max-width:100%;border:1px solid #eee}}\
         figcaption{{font-size:90%;color:#555}}</style></head><body>\n<h1>{t}</h1>\n",
        t = escape(title)
    );
    for section in sections {
        let _ = writeln!(out, "<h2>{}</h2>", escape(&section.heading));
        if !section.table.is_empty() {
            out.push_str("<table>\n");
            for (name, value) in &section.table {
                let _ = writeln!(
                    out,
                    "<tr><th>{}</th><td>{}</td></tr>",
                    escape(name),
                    escape(value)
                );
            }
            out.push_str("</table>\n");
        }
        if let Some((header, rows)) = &section.grid {
            out.push_str("<table>\n<tr>");
            for h in header {
                let _ = write!(out, "<th>{}</th>", escape(h));
            }
            out.push_str("</tr>\n");
            for row in rows {
                out.push_str("<tr>");
                for cell in row {
                    let _ = write!(out, "<td>{}</td>", escape(cell));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</table>\n");
        }
        for figure in &section.figures {
            let bytes = std::fs::read(&figure.png).map_err(|source| ReportError::Io {
                path: figure.png.clone(),
                source,
            })?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            let svg_name = figure
                .svg
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "<figure><img alt=\"{t}\" src=\"data:image/png;base64,{data}\">\
                 <figcaption>{t} (<a href=\"{svg}\">SVG</a>)</figcaption></figure>",
                t = escape(&figure.title),
                svg = escape(&svg_name)
            );
        }
    }
    out.push_str("</body></html>\n");
    Ok(out)
}
