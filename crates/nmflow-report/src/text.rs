//! Text on the PNG figures, rasterized with each glyph at its own left
//! side bearing and at its exact (fractional) pen position.
//!
//! The plotting library's own rasterizer draws every glyph from the pen
//! position, dropping its bearing, and rounds the pen down, so letter
//! spacing breaks ("con sensus", "row max" read as "rowmax"). [`Glyphs`]
//! wraps a drawing backend and replaces only its text drawing; layout
//! (sizes, anchors, rotation) is the library's, so figures keep their
//! geometry. SVG files are unaffected: their text is laid out by the
//! viewer.

use ab_glyph::{Font, FontRef, ScaleFont, point};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind,
    FontStyle,
    text_anchor::{HPos, VPos},
};

/// A drawing backend whose text is drawn by [`draw_glyphs`].
pub(crate) struct Glyphs<B>(pub(crate) B);

/// The embedded font of `style`: DejaVu Sans, bold or regular.
fn font(style: FontStyle) -> Option<FontRef<'static>> {
    let bytes = match style {
        FontStyle::Bold => dejavu::sans::bold(),
        _ => dejavu::sans::regular(),
    };
    FontRef::try_from_slice(bytes).ok()
}

/// Calls `pixel(x, y, coverage)` for every pixel of `text` set in `font`
/// at `size`, from the origin of its first glyph's pen position, the top
/// of the line at y = 0 as the plotting library lays it out.
fn draw_glyphs<E>(
    font: &FontRef<'static>,
    size: f32,
    text: &str,
    mut pixel: impl FnMut(i32, i32, f32) -> Result<(), E>,
) -> Result<(), E> {
    let scaled = font.as_scaled(size);
    let mut pen = 0f32;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = previous {
            pen += scaled.kern(p, id);
        }
        previous = Some(id);
        let glyph = id.with_scale_and_position(size, point(pen, 0.0));
        if let Some(outline) = scaled.outline_glyph(glyph) {
            let bounds = outline.px_bounds();
            // The library's vertical placement, kept so that text sits
            // where the layout put it.
            let y0 = (size / 2.0 + bounds.min.y) as i32;
            let x0 = bounds.min.x as i32;
            let mut pixels = Vec::new();
            outline.draw(|x, y, coverage| pixels.push((x, y, coverage)));
            for (x, y, coverage) in pixels {
                pixel(x0 + x as i32, y0 + y as i32, coverage)?;
            }
        }
        pen += scaled.h_advance(id);
    }
    Ok(())
}

impl<B: DrawingBackend> DrawingBackend for Glyphs<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    /// The library's text drawing (layout box, anchor, rotation, clipping),
    /// with the glyphs placed by [`draw_glyphs`].
    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let Some(font) = font(style.style()) else {
            return self.0.draw_text(text, style, pos);
        };
        let ((min_x, min_y), (max_x, max_y)) = style
            .layout_box(text)
            .map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let transform = style.transform();
        let (w, h) = self.0.get_size();
        let backend = &mut self.0;
        draw_glyphs(&font, style.size() as f32, text, |x, y, coverage| {
            let (x, y) = transform.transform(x + dx - min_x, y + dy - min_y);
            let (x, y) = (pos.0 + x, pos.1 + y);
            if x >= 0 && x < w as i32 && y >= 0 && y < h as i32 {
                backend.draw_pixel((x, y), color.mix(f64::from(coverage)))
            } else {
                Ok(())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns of `text`'s pixels that some glyph covers by at least half.
    fn inked_columns(text: &str) -> Vec<bool> {
        let font = font(FontStyle::Normal).expect("font");
        let mut columns = vec![false; 200];
        draw_glyphs::<()>(&font, 13.0, text, |x, _, coverage| {
            if coverage >= 0.5 {
                columns[x as usize] = true;
            }
            Ok(())
        })
        .expect("drawn");
        columns
    }

    /// The widest run of blank columns between the first and last inked
    /// column.
    fn widest_gap(columns: &[bool]) -> usize {
        let first = columns.iter().position(|&c| c).expect("ink");
        let last = columns.iter().rposition(|&c| c).expect("ink");
        columns[first..=last]
            .split(|&c| c)
            .map(<[bool]>::len)
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn a_word_has_no_gap_as_wide_as_a_space_and_two_words_do() {
        // At 13 px a space advances about 4 px; letters of one word are
        // at most 2 px apart.
        for word in ["consensus", "program", "cells", "usage"] {
            let gap = widest_gap(&inked_columns(word));
            assert!(gap <= 2, "{word}: a gap of {gap} px");
        }
        let gap = widest_gap(&inked_columns("row max"));
        assert!(gap >= 4, "row max: the space is {gap} px");
    }
}
