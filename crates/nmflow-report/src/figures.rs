//! The figures: error curves, the W heatmap, top columns per component,
//! principal components coloured by W, and the sweep's scores against k.

use ndarray::ArrayView2;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::Plot;

const FONT: &str = "sans-serif";

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// A viridis-like colour for `t` in [0, 1].
fn colour(t: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 5] = [
        (68.0, 1.0, 84.0),
        (59.0, 82.0, 139.0),
        (33.0, 145.0, 140.0),
        (94.0, 201.0, 98.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (ANCHORS.len() - 1) as f64;
    let i = (x.floor() as usize).min(ANCHORS.len() - 2);
    let f = x - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Okabe & Ito's colour-blind-safe palette (the yellow darkened for
/// contrast on white), then Tol's muted palette: 16 distinct series
/// colours, repeated beyond.
const SERIES: [RGBColor; 16] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(213, 94, 0),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
    RGBColor(181, 160, 0),
    RGBColor(0, 0, 0),
    RGBColor(51, 34, 136),
    RGBColor(136, 204, 238),
    RGBColor(68, 170, 153),
    RGBColor(17, 119, 51),
    RGBColor(153, 153, 51),
    RGBColor(204, 102, 119),
    RGBColor(136, 34, 85),
    RGBColor(170, 68, 153),
];

fn series_colour(i: usize) -> RGBColor {
    SERIES[i % SERIES.len()]
}

/// A vertical colour bar from 0 to 1 in `area`, labelled `label`.
fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    label: &str,
) -> Result<(), String> {
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(10)
        .y_label_area_size(40)
        .caption(label, (FONT, 13))
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_y_mesh()
        .x_labels(0)
        .y_labels(5)
        .y_label_style((FONT, 13))
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()
        .map_err(err)?;
    chart
        .draw_series((0..100).map(|i| {
            let y = i as f64 / 100.0;
            Rectangle::new([(0.0, y), (1.0, y + 0.01)], colour(y + 0.005).filled())
        }))
        .map_err(err)?;
    Ok(())
}

/// The chart type of the line figures.
type LineChart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws one line (with markers of `point_size` when not 0) and its legend
/// entry.
fn line<'a, DB: DrawingBackend + 'a>(
    chart: &mut LineChart<'a, DB>,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    label: &str,
    point_size: u32,
) -> Result<(), String> {
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(2)).point_size(point_size))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    Ok(())
}

/// The legend box at `position`.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut LineChart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .position(position)
        .draw()
        .map_err(err)
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-6);
    (lo - pad, hi + pad)
}

/// Relative error against iteration, one line per run.
pub struct ErrorCurves {
    /// Title.
    pub title: String,
    /// (legend label, relative error per iteration).
    pub curves: Vec<(String, Vec<f64>)>,
}

impl Plot for ErrorCurves {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let n_iter = self
            .curves
            .iter()
            .map(|(_, c)| c.len())
            .max()
            .unwrap_or(1)
            .max(2);
        let (lo, hi) = range(self.curves.iter().flat_map(|(_, c)| c.iter().copied()));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(1f64..n_iter as f64, lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("iteration")
            .y_desc("relative error ‖X − WH‖ / ‖X‖")
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 13))
            .x_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(err)?;
        for (i, (label, curve)) in self.curves.iter().enumerate() {
            let points = curve
                .iter()
                .enumerate()
                .map(|(t, &e)| ((t + 1) as f64, e))
                .collect();
            line(&mut chart, points, series_colour(i), label, 0)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

/// How far each solver's error is above the best error any of them
/// reached, against seconds, both on log scales: the time-to-solution
/// figure of the benchmarks.
pub struct TimeToError {
    /// Title.
    pub title: String,
    /// The best relative error reached.
    pub best: f64,
    /// (legend label, (seconds, relative error) after each iteration).
    pub curves: Vec<(String, Vec<(f64, f64)>)>,
}

impl TimeToError {
    /// The lowest gap drawn (errors closer to the best are drawn there).
    const FLOOR: f64 = 1e-5;

    fn points(&self, curve: &[(f64, f64)]) -> Vec<(f64, f64)> {
        curve
            .iter()
            .filter(|(t, e)| *t > 0.0 && e.is_finite())
            .map(|&(t, e)| (t.log10(), (e / self.best - 1.0).max(Self::FLOOR).log10()))
            .collect()
    }
}

impl Plot for TimeToError {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let all: Vec<(f64, f64)> = self
            .curves
            .iter()
            .flat_map(|(_, c)| self.points(c))
            .collect();
        let (x_lo, x_hi) = range(all.iter().map(|p| p.0));
        let y_hi = all.iter().map(|p| p.1).fold(-1.0f64, f64::max).min(1.0);
        let y_lo = Self::FLOOR.log10();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi + 0.1)
            .map_err(err)?;
        let power = |v: &f64| {
            let p = 10f64.powf(*v);
            if p >= 1.0 {
                format!("{p:.0}")
            } else {
                format!("{p:.1e}")
            }
        };
        chart
            .configure_mesh()
            .x_desc("seconds (log scale)")
            .y_desc("error above the best, relative (log scale)")
            .x_label_formatter(&|v| {
                let s = 10f64.powf(*v);
                if s >= 10.0 {
                    format!("{s:.0}")
                } else if s >= 1.0 {
                    format!("{s:.1}")
                } else {
                    format!("{s:.2}")
                }
            })
            .y_label_formatter(&power)
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(err)?;
        for threshold in [1e-2f64, 3e-3, 1e-3] {
            let y = threshold.log10();
            chart
                .draw_series(LineSeries::new(
                    vec![(x_lo, y), (x_hi, y)],
                    RGBColor(170, 170, 170).stroke_width(1),
                ))
                .map_err(err)?;
        }
        for (i, (label, curve)) in self.curves.iter().enumerate() {
            line(&mut chart, self.points(curve), series_colour(i), label, 2)?;
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

/// The order of rows grouping them by cluster (argmax of the W row), and
/// by decreasing weight within a cluster; returns (order, cluster of each
/// row).
pub fn order_by_cluster(w: ArrayView2<'_, f32>) -> (Vec<usize>, Vec<usize>) {
    let clusters: Vec<usize> = w
        .outer_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv { (i, v) } else { (bi, bv) }
                })
                .0
        })
        .collect();
    let mut order: Vec<usize> = (0..w.nrows()).collect();
    order.sort_by(|&a, &b| {
        clusters[a]
            .cmp(&clusters[b])
            .then(w[(b, clusters[b])].total_cmp(&w[(a, clusters[a])]))
    });
    (order, clusters)
}

/// W of a row sample: rows grouped by cluster, columns the components,
/// each row scaled to its largest entry.
pub struct WHeatmap<'a> {
    /// Title.
    pub title: String,
    /// W at the sampled rows.
    pub w: ArrayView2<'a, f32>,
}

impl Plot for WHeatmap<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        (760, 640)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (n, k) = self.w.dim();
        let (order, clusters) = order_by_cluster(self.w);
        // At most 400 drawn rows: consecutive sorted rows are averaged.
        let n_bins = n.clamp(1, 400);
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 110);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            // Program c spans [c − ½, c + ½]: its tick at the centre.
            .build_cartesian_2d(-0.5f64..k as f64 - 0.5, 0f64..n as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("program")
            .y_desc(format!("cells ({n} sampled), grouped by cluster"))
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 13))
            .x_labels(k.min(30))
            .x_label_formatter(&|x| {
                if (x - x.round()).abs() < 1e-6 {
                    format!("{}", x.round() as i64)
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        let mut cells = Vec::with_capacity(n_bins * k);
        for bin in 0..n_bins {
            let (a, b) = (
                bin * n / n_bins,
                ((bin + 1) * n / n_bins).max(bin * n / n_bins + 1),
            );
            let b = b.min(n);
            for c in 0..k {
                let mut sum = 0.0f64;
                for &r in &order[a..b] {
                    let row = self.w.row(r);
                    let max = row.iter().fold(0.0f32, |m, &v| m.max(v));
                    if max > 0.0 {
                        sum += f64::from(row[c] / max);
                    }
                }
                let value = sum / (b - a).max(1) as f64;
                // Row 0 of the order at the top.
                let (y0, y1) = ((n - b) as f64, (n - a) as f64);
                cells.push(Rectangle::new(
                    [(c as f64 - 0.5, y0), (c as f64 + 0.5, y1)],
                    colour(value).filled(),
                ));
            }
        }
        chart.draw_series(cells).map_err(err)?;
        // Cluster boundaries.
        let mut boundaries = Vec::new();
        let mut bands = Vec::new();
        let mut band_start = 0;
        for i in 1..=n {
            if i == n || clusters[order[i]] != clusters[order[i - 1]] {
                if i < n {
                    let y = (n - i) as f64;
                    boundaries.push(PathElement::new(
                        vec![(-0.5, y), (k as f64 - 0.5, y)],
                        WHITE.stroke_width(1),
                    ));
                }
                // Each cluster's band labelled at its middle, on the right
                // (bands too thin for a line of text are left unlabelled).
                let middle = (n - (band_start + i) / 2) as f64;
                if (i - band_start) * 30 < n {
                    band_start = i;
                    continue;
                }
                bands.push(Text::new(
                    format!("cluster {}", clusters[order[band_start]]),
                    (k as f64 - 0.5 - 0.02 * k as f64, middle),
                    (FONT, 12).into_font().color(&WHITE).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Right,
                            plotters::style::text_anchor::VPos::Center,
                        ),
                    ),
                ));
                band_start = i;
            }
        }
        chart.draw_series(boundaries).map_err(err)?;
        if bands.len() <= 30 {
            chart.draw_series(bands).map_err(err)?;
        }
        colour_bar(&bar, "usage / max")
    }
}

/// The most heavily weighted columns (genes) of every component (row of
/// H), one panel per component.
pub struct TopColumns<'a> {
    /// Title.
    pub title: String,
    /// H, `k × n_cols`.
    pub h: ArrayView2<'a, f32>,
    /// Column names (numbers when absent).
    pub names: Option<&'a [String]>,
    /// Columns per panel.
    pub top: usize,
    /// What the genes are ranked by, and the bars show.
    pub by: crate::programs::RankBy,
}

impl TopColumns<'_> {
    fn grid(&self) -> (usize, usize) {
        let k = self.h.nrows().max(1);
        let cols = k.min(4);
        (k.div_ceil(cols), cols)
    }
}

impl Plot for TopColumns<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (
            cols as u32 * 260 + 20,
            rows as u32 * (60 + 22 * self.top as u32) + 60,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let root = root.titled(&self.title, (FONT, 20)).map_err(err)?;
        let (rows, cols) = self.grid();
        let panels = root.split_evenly((rows, cols));
        let ranked = crate::programs::top_genes(self.h, self.top, self.by);
        let (x_desc, value): (&str, fn(&crate::programs::ProgramGene) -> f64) = match self.by {
            crate::programs::RankBy::Loading => ("loading (data units)", |g| f64::from(g.loading)),
            crate::programs::RankBy::Specificity => {
                ("specificity (z-score across programs)", |g| g.specificity)
            }
        };
        for (c, panel) in panels.iter().enumerate().take(self.h.nrows()) {
            let genes: Vec<(usize, f64)> = ranked
                .iter()
                .filter(|g| g.program == c)
                .map(|g| (g.gene, value(g).max(0.0)))
                .collect();
            let idx: Vec<usize> = genes.iter().map(|g| g.0).collect();
            let max = genes.first().map_or(1.0, |g| g.1).max(1e-12);
            let n = idx.len();
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("program {c}"), (FONT, 14))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(10)
                .build_cartesian_2d(0f64..max * 1.05, 0f64..n.max(1) as f64)
                .map_err(err)?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(0)
                .x_labels(3)
                .x_desc(x_desc)
                .axis_desc_style((FONT, 11))
                .draw()
                .map_err(err)?;
            let colour = series_colour(c);
            chart
                .draw_series(genes.iter().enumerate().map(|(rank, &(_, v))| {
                    let y = (n - rank) as f64;
                    Rectangle::new([(0.0, y - 0.85), (v, y - 0.15)], colour.mix(0.45).filled())
                }))
                .map_err(err)?;
            chart
                .draw_series(idx.iter().enumerate().map(|(rank, &j)| {
                    let y = (n - rank) as f64 - 0.5;
                    let name = match self.names {
                        Some(names) => names.get(j).cloned().unwrap_or_else(|| j.to_string()),
                        None => format!("gene {j}"),
                    };
                    Text::new(name, (max * 0.02, y + 0.3), (FONT, 12).into_font())
                }))
                .map_err(err)?;
        }
        Ok(())
    }
}

/// The first two principal components of the row sample: one panel
/// coloured by cluster, one by label when there are labels, and one per
/// component of W, points coloured by that column of W.
pub struct PcaPanels<'a> {
    /// Title.
    pub title: String,
    /// Scores, `sample × 2`.
    pub scores: ArrayView2<'a, f32>,
    /// Fraction of variance of PC1 and PC2.
    pub variance_ratio: &'a [f64],
    /// W at the same rows.
    pub w: ArrayView2<'a, f32>,
    /// Known groups of the same rows (cell types), if any.
    pub labels: Option<SampleLabels<'a>>,
}

/// Known groups of the sampled rows.
pub struct SampleLabels<'a> {
    /// What they are (the obs column).
    pub what: &'a str,
    /// The group of each sampled row, a code into `names`.
    pub codes: &'a [u32],
    /// The groups' names.
    pub names: &'a [String],
}

impl PcaPanels<'_> {
    /// The panels: the clusters, the labels, then each program's usage.
    fn grid(&self) -> (usize, usize) {
        let panels = self.w.ncols() + 1 + usize::from(self.labels.is_some());
        let cols = panels.min(4);
        (panels.div_ceil(cols), cols)
    }

    /// PC1 and PC2 of sampled row `i`.
    fn point(&self, i: usize) -> (f64, f64) {
        let y = if self.scores.ncols() > 1 {
            self.scores[(i, 1)]
        } else {
            0.0
        };
        (f64::from(self.scores[(i, 0)]), f64::from(y))
    }
}

impl Plot for PcaPanels<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        let (rows, cols) = self.grid();
        (cols as u32 * 250 + 110, rows as u32 * 240 + 60)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let root = root.titled(&self.title, (FONT, 20)).map_err(err)?;
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 100);
        let (rows, cols) = self.grid();
        let panels = main.split_evenly((rows, cols));
        let (x_lo, x_hi) = range(self.scores.column(0).iter().map(|&v| f64::from(v)));
        let (y_lo, y_hi) = if self.scores.ncols() > 1 {
            range(self.scores.column(1).iter().map(|&v| f64::from(v)))
        } else {
            (-1.0, 1.0)
        };
        let pct = |i: usize| self.variance_ratio.get(i).copied().unwrap_or(0.0) * 100.0;
        let axes =
            |chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>| {
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_labels(3)
                    .y_labels(3)
                    .x_desc(format!("PC1 ({:.1}%)", pct(0)))
                    .y_desc(format!("PC2 ({:.1}%)", pct(1)))
                    .axis_desc_style((FONT, 11))
                    .draw()
                    .map_err(err)
            };
        // Panel 0: each cell coloured by its cluster (the program of its
        // largest usage), each cluster named at its centre.
        let (_, clusters) = order_by_cluster(self.w);
        let clusters: Vec<u32> = clusters.iter().map(|&c| c as u32).collect();
        let panel_chart = |panel, caption: String| {
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, (FONT, 13))
                .margin(6)
                .x_label_area_size(32)
                .y_label_area_size(40)
                .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)
                .map_err(err)?;
            axes(&mut chart)?;
            Ok::<_, String>(chart)
        };
        let cluster_names: Vec<String> = (0..self.w.ncols()).map(|c| c.to_string()).collect();
        let mut categorical: Vec<(String, &[u32], &[String])> =
            vec![("cluster (largest usage)".into(), &clusters, &cluster_names)];
        if let Some(labels) = &self.labels {
            categorical.push((
                format!("label ({})", labels.what),
                labels.codes,
                labels.names,
            ));
        }
        for (panel, (caption, codes, names)) in panels.iter().zip(&categorical) {
            let mut chart = panel_chart(panel, caption.clone())?;
            chart
                .draw_series((0..self.scores.nrows()).map(|i| {
                    Circle::new(self.point(i), 2, series_colour(codes[i] as usize).filled())
                }))
                .map_err(err)?;
            // Each group named at its centre (when there are few enough to
            // read).
            let mut centres = vec![(0.0f64, 0.0f64, 0usize); names.len()];
            for (i, &c) in codes.iter().enumerate() {
                let (x, y) = self.point(i);
                if let Some(m) = centres.get_mut(c as usize) {
                    *m = (m.0 + x, m.1 + y, m.2 + 1);
                }
            }
            let shown = centres.iter().filter(|m| m.2 > 0).count();
            if shown <= 20 {
                chart
                    .draw_series(centres.iter().enumerate().filter(|(_, m)| m.2 > 0).map(
                        |(c, &(x, y, n))| {
                            Text::new(
                                names[c].clone(),
                                (x / n as f64, y / n as f64),
                                (FONT, if names[c].len() > 3 { 11 } else { 15 })
                                    .into_font()
                                    .style(FontStyle::Bold),
                            )
                        },
                    ))
                    .map_err(err)?;
            }
        }
        for (c, panel) in panels
            .iter()
            .skip(categorical.len())
            .enumerate()
            .take(self.w.ncols())
        {
            let column = self.w.column(c);
            let max = column
                .iter()
                .fold(0.0f32, |m, &v| m.max(v))
                .max(f32::MIN_POSITIVE);
            let mut chart = panel_chart(panel, format!("usage of program {c}"))?;
            let mut points: Vec<usize> = (0..self.scores.nrows()).collect();
            points.sort_by(|&a, &b| column[a].total_cmp(&column[b]));
            chart
                .draw_series(points.iter().map(|&i| {
                    Circle::new(
                        self.point(i),
                        2,
                        colour(f64::from(column[i] / max)).filled(),
                    )
                }))
                .map_err(err)?;
        }
        colour_bar(&bar, "usage / max")
    }
}

/// The consensus matrix of one k: for sampled cells in the order of its
/// average-linkage dendrogram, the fraction of restarts that put each pair
/// in the same cluster. Sharp blocks on the diagonal mean that restarts
/// agree.
pub struct ConsensusHeatmap<'a> {
    /// Title.
    pub title: String,
    /// The consensus, `cells × cells`, values in [0, 1].
    pub consensus: ArrayView2<'a, f32>,
    /// The order the cells are drawn in (a permutation of the rows).
    pub order: &'a [usize],
}

impl Plot for ConsensusHeatmap<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn size(&self) -> (u32, u32) {
        (760, 660)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let n = self.order.len();
        let (main, bar) = root.split_horizontally(root.dim_in_pixel().0 - 110);
        let mut chart = ChartBuilder::on(&main)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n.max(1) as f64, 0f64..n.max(1) as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(format!("cells ({n} sampled), dendrogram order"))
            .y_desc("cells")
            .axis_desc_style((FONT, 14))
            .label_style((FONT, 13))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(err)?;
        // Runs of equal values along a row drawn as one rectangle (the
        // consensus takes few distinct values: restarts + 1).
        let mut cells = Vec::new();
        for (a, &i) in self.order.iter().enumerate() {
            let (y0, y1) = ((n - a - 1) as f64, (n - a) as f64);
            let mut start = 0;
            for b in 1..=n {
                let value = self.consensus[(i, self.order[start])];
                if b == n || self.consensus[(i, self.order[b])] != value {
                    cells.push(Rectangle::new(
                        [(start as f64, y0), (b as f64, y1)],
                        colour(f64::from(value)).filled(),
                    ));
                    start = b;
                }
            }
        }
        chart.draw_series(cells).map_err(err)?;
        colour_bar(&bar, "consensus")
    }
}

/// Best and mean (± sd) final relative error against k.
pub struct SweepErrors<'a> {
    /// Title.
    pub title: String,
    /// Values of k.
    pub ks: &'a [usize],
    /// Best final error per k.
    pub best: &'a [f64],
    /// Mean final error per k.
    pub mean: &'a [f64],
    /// Standard deviation per k.
    pub sd: &'a [f64],
}

fn k_axis(ks: &[usize]) -> std::ops::Range<f64> {
    let lo = ks.first().copied().unwrap_or(1) as f64;
    let hi = ks.last().copied().unwrap_or(2) as f64;
    (lo - 0.5)..(hi + 0.5)
}

impl Plot for SweepErrors<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let (lo, hi) = range(
            self.best.iter().copied().chain(
                self.mean
                    .iter()
                    .zip(self.sd)
                    .flat_map(|(m, s)| [m - s, m + s]),
            ),
        );
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(k_axis(self.ks), lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("k (programs)")
            .y_desc("final relative error")
            .axis_desc_style((FONT, 14))
            .x_labels(self.ks.len().max(2) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        let points = |v: &[f64]| -> Vec<(f64, f64)> {
            self.ks
                .iter()
                .zip(v)
                .map(|(&k, &e)| (k as f64, e))
                .collect()
        };
        let mean = series_colour(1);
        line(
            &mut chart,
            points(self.best),
            series_colour(0),
            "best of the restarts",
            4,
        )?;
        line(
            &mut chart,
            points(self.mean),
            mean,
            "mean ± sd of the restarts",
            3,
        )?;
        chart
            .draw_series(
                self.ks
                    .iter()
                    .zip(self.mean)
                    .zip(self.sd)
                    .map(|((&k, &m), &s)| {
                        PathElement::new(
                            vec![(k as f64, m - s), (k as f64, m + s)],
                            mean.stroke_width(1),
                        )
                    }),
            )
            .map_err(err)?;
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        Ok(())
    }
}

/// Several scores against k (stability, or agreement with labels).
pub struct StabilityCurves<'a> {
    /// Title.
    pub title: String,
    /// Label of the y axis.
    pub y_desc: String,
    /// Values of k.
    pub ks: &'a [usize],
    /// (legend label, value per k; NaN where undefined).
    pub curves: Vec<(String, Vec<f64>)>,
    /// A k to mark, with its legend label (the suggested k).
    pub marker: Option<(usize, String)>,
}

impl Plot for StabilityCurves<'_> {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        // Zoomed to the data (scores between 0.95 and 1 are told apart).
        let (lo, hi) = range(self.curves.iter().flat_map(|(_, c)| c.iter().copied()));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 20))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(k_axis(self.ks), lo..hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("k (programs)")
            .y_desc(self.y_desc.as_str())
            .axis_desc_style((FONT, 14))
            .x_labels(self.ks.len().max(2) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(err)?;
        for (i, (label, values)) in self.curves.iter().enumerate() {
            let c = series_colour(i);
            let points: Vec<(f64, f64)> = self
                .ks
                .iter()
                .zip(values)
                .filter(|(_, v)| v.is_finite())
                .map(|(&k, &v)| (k as f64, v))
                .collect();
            line(&mut chart, points, c, label, 4)?;
        }
        if let Some((k, label)) = &self.marker {
            mark_k(&mut chart, *k, (lo, hi), label)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
        Ok(())
    }
}

/// A vertical line at `k` across the chart's `y` range, in the legend as
/// `label`.
fn mark_k<DB: DrawingBackend>(
    chart: &mut LineChart<'_, DB>,
    k: usize,
    (lo, hi): (f64, f64),
    label: &str,
) -> Result<(), String> {
    let grey = RGBColor(90, 90, 90);
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(k as f64, lo), (k as f64, hi)],
            grey.stroke_width(2),
        )))
        .map_err(err)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2)));
    Ok(())
}

/// The spectra stability at or above which a k counts as stable.
pub const STABLE: f64 = 0.9;

/// The k a sweep suggests, and its rule in words: the largest k, up to the
/// elbow of the best error against k, whose spectra stability is at least
/// [`STABLE`] (cNMF's users read the stability and error plots so); the
/// elbow itself when no k up to it is that stable. The elbow is the k
/// farthest below the straight line joining the first and last best
/// errors (both axes scaled to [0, 1]). `None` for fewer than three k.
pub fn suggest_k(ks: &[usize], best_error: &[f64], stability: &[f64]) -> Option<(usize, String)> {
    if ks.len() < 3 || best_error.len() != ks.len() || stability.len() != ks.len() {
        return None;
    }
    let (k0, kn) = (ks[0] as f64, ks[ks.len() - 1] as f64);
    let (e0, en) = (best_error[0], best_error[ks.len() - 1]);
    if kn <= k0 || e0 <= en || !(e0 - en).is_finite() {
        return None;
    }
    let elbow = (0..ks.len())
        .max_by(|&a, &b| {
            let below = |i: usize| {
                let x = (ks[i] as f64 - k0) / (kn - k0);
                let y = (best_error[i] - en) / (e0 - en);
                1.0 - x - y
            };
            below(a).total_cmp(&below(b))
        })
        .unwrap_or(0);
    let stable = (0..=elbow).rev().find(|&i| stability[i] >= STABLE);
    Some(match stable {
        Some(i) => (
            ks[i],
            format!(
                "suggested k = {}: the largest k up to the error's elbow (k = {}) with spectra stability ≥ {STABLE}",
                ks[i], ks[elbow]
            ),
        ),
        None => (
            ks[elbow],
            format!(
                "suggested k = {}: the error's elbow (no k up to it has spectra stability ≥ {STABLE})",
                ks[elbow]
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_suggested_k_is_the_largest_stable_one_up_to_the_elbow() {
        let ks = [2, 3, 4, 5, 6, 7];
        // The error bends at k = 4.
        let error = [0.9, 0.7, 0.5, 0.48, 0.47, 0.46];
        let stability = [0.99, 0.95, 0.92, 0.97, 0.6, 0.5];
        let (k, rule) = suggest_k(&ks, &error, &stability).expect("a k");
        assert_eq!(k, 4, "{rule}");
        assert!(rule.contains("elbow (k = 4)"), "{rule}");
        let unstable = [0.5; 6];
        assert_eq!(suggest_k(&ks, &error, &unstable).map(|s| s.0), Some(4));
        let shaky = [0.99, 0.95, 0.5, 0.97, 0.6, 0.5];
        assert_eq!(suggest_k(&ks, &error, &shaky).map(|s| s.0), Some(3));
        assert_eq!(suggest_k(&ks[..2], &error[..2], &stability[..2]), None);
    }

    #[test]
    fn rows_are_grouped_by_cluster_then_weight() {
        let w = array![[0.1f32, 0.9], [0.8, 0.2], [0.3, 0.5], [0.95, 0.0]];
        let (order, clusters) = order_by_cluster(w.view());
        assert_eq!(clusters, vec![1, 0, 1, 0]);
        assert_eq!(order, vec![3, 1, 0, 2]);
    }

    #[test]
    fn figures_render_to_png_and_svg_without_system_fonts() {
        let dir = tempfile::tempdir().unwrap();
        let plot = ErrorCurves {
            title: "error".into(),
            curves: vec![("k = 2".into(), vec![0.9, 0.5, 0.4])],
        };
        let figure = crate::render(&plot, dir.path(), "error_curve").unwrap();
        let png = std::fs::read(&figure.png).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
        let svg = std::fs::read_to_string(&figure.svg).unwrap();
        assert!(svg.contains("<svg") && svg.contains("iteration"));
        let w = array![[0.1f32, 0.9], [0.8, 0.2]];
        crate::render(
            &WHeatmap {
                title: "W".into(),
                w: w.view(),
            },
            dir.path(),
            "w",
        )
        .unwrap();
        let c = array![[1.0f32, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 1.0]];
        let figure = crate::render(
            &ConsensusHeatmap {
                title: "consensus".into(),
                consensus: c.view(),
                order: &[0, 2, 1],
            },
            dir.path(),
            "consensus",
        )
        .unwrap();
        // Runs of equal values are merged: 2 rectangles in rows 0 and 2
        // (the pair, then the other cell), 2 in row 1, plus the colour
        // bar's 100 and the frame.
        let svg = std::fs::read_to_string(&figure.svg).unwrap();
        assert!(svg.matches("<rect").count() < 120, "{}", svg.len());
    }
}
