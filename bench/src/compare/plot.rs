//! PNG plots of the comparison: one per metric, the median against N on a
//! log axis, one line per contender, min–max as error bars. Drawn with
//! plotters' pure-Rust bitmap backend; text through `ab_glyph` with a TTF
//! read from disk at run time (DejaVu Sans, Debian's `fonts-dejavu-core`),
//! so building needs no system library.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::register_font;

use super::model::{CompareResult, Contender, Metric};
use super::report::rules_label;

/// Where fonts are looked for.
const FONT_ROOT: &str = "/usr/share/fonts";
/// The font file looked for under [`FONT_ROOT`].
const FONT_FILE: &str = "DejaVuSans.ttf";
/// Where Debian's `fonts-dejavu-core` puts it (tried first).
const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// The family name the font is registered under (plotters' `SansSerif`).
const FAMILY: &str = "sans-serif";
/// Image size, pixels.
const SIZE: (u32, u32) = (900, 540);
/// Width of the legend column at the right, pixels.
const LEGEND_WIDTH: u32 = 190;
/// Above this ratio of largest to smallest (all positive), the y axis is
/// logarithmic, so that a contender far off does not flatten the others.
const LOG_Y_SPAN: f64 = 100.0;

type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;
type DrawError = DrawingAreaErrorKind<BitmapError>;

/// Why plots could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No font to draw text with.
    #[error(
        "no font for the plots: {FONT_FILE} not found under {}; install the Debian package fonts-dejavu-core",
        root.display()
    )]
    NoFont {
        /// Where it was looked for.
        root: PathBuf,
    },
    /// The font file could not be read.
    #[error("reading font {}", path.display())]
    ReadFont {
        /// The font file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The font file is not a font plotters can load.
    #[error("{} is not a TrueType or OpenType font plotters can load", path.display())]
    BadFont {
        /// The font file.
        path: PathBuf,
    },
    /// The output directory could not be made.
    #[error("creating {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// plotters failed drawing or writing a PNG.
    #[error("drawing {}", path.display())]
    Draw {
        /// The PNG.
        path: PathBuf,
        /// plotters' error.
        #[source]
        source: DrawError,
    },
}

/// The PNG of `metric` for the report `prefix` (`compare-packet_rate.png`).
pub fn file_name(prefix: &str, metric: Metric) -> String {
    format!("{prefix}-{}.png", metric.key())
}

/// The metrics [`plots`] draws: those with at least one finite median at a
/// positive N (a log axis has no 0), in report order.
pub fn plotted_metrics(r: &CompareResult) -> Vec<Metric> {
    Metric::ALL
        .into_iter()
        .filter(|&m| !series(r, m).is_empty())
        .collect()
}

/// Draws one PNG per metric in [`plotted_metrics`] into `dir` (made if
/// missing), named by [`file_name`], and returns their paths in report
/// order.
pub fn plots(r: &CompareResult, dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font()?;
    fs::create_dir_all(dir).map_err(|source| PlotError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for m in plotted_metrics(r) {
        let path = dir.join(file_name(prefix, m));
        draw(&path, m, &series(r, m)).map_err(|source| PlotError::Draw {
            path: path.clone(),
            source,
        })?;
        out.push(path);
    }
    Ok(out)
}

/// One contender's points: (N, median, min, max), N ascending.
struct Series {
    contender: Contender,
    points: Vec<(f64, f64, f64, f64)>,
}

fn series(r: &CompareResult, m: Metric) -> Vec<Series> {
    Contender::ALL
        .into_iter()
        .filter_map(|c| {
            let mut points: Vec<(f64, f64, f64, f64)> = r
                .cells
                .iter()
                .filter(|x| x.contender == c && x.metric == m && x.rules > 0)
                .filter(|x| x.median.is_finite())
                .map(|x| {
                    // A range that does not hold the median (odd data) is
                    // drawn as none rather than as a wrong bar.
                    let (lo, hi) = if x.min.is_finite() && x.max.is_finite() {
                        (x.min.min(x.median), x.max.max(x.median))
                    } else {
                        (x.median, x.median)
                    };
                    (x.rules as f64, x.median, lo, hi)
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!points.is_empty()).then_some(Series {
                contender: c,
                points,
            })
        })
        .collect()
}

fn color(c: Contender) -> RGBColor {
    match c {
        Contender::Bare => RGBColor(0, 0, 0),
        Contender::HookFloor => RGBColor(140, 140, 140),
        Contender::IptablesLinear => RGBColor(214, 39, 40),
        Contender::IptablesIpset => RGBColor(255, 127, 14),
        Contender::Nftables => RGBColor(148, 103, 189),
        Contender::BulkheadTc => RGBColor(31, 119, 180),
        Contender::BulkheadTcXdp => RGBColor(23, 190, 207),
        Contender::BulkheadTcStack => RGBColor(148, 103, 189),
    }
}

/// Bulkhead's lines are drawn thicker: they are what the report is about.
fn width(c: Contender) -> u32 {
    if c.is_bulkhead() { 3 } else { 2 }
}

/// An axis tick: up to three decimals, trailing zeros dropped.
fn tick(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn draw(path: &Path, m: Metric, series: &[Series]) -> Result<(), DrawError> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{} ({})", m.title(), m.unit()),
        (FAMILY, 24).into_font().color(&BLACK),
    )?;
    let (chart_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_WIDTH);

    let ns = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (n_lo, n_hi) = ns.fold((f64::MAX, f64::MIN), |(lo, hi), n| (lo.min(n), hi.max(n)));
    // Half a decade of room on both sides, so the end markers stand clear.
    let x = (n_lo / 2.0..n_hi * 2.0).log_scale();

    let values = series
        .iter()
        .flat_map(|s| s.points.iter().flat_map(|p| [p.2, p.3]));
    let (v_lo, v_hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let y_desc = if v_lo > 0.0 && v_hi / v_lo > LOG_Y_SPAN {
        format!("{} (log scale)", m.unit())
    } else {
        m.unit().to_string()
    };
    if v_lo > 0.0 && v_hi / v_lo > LOG_Y_SPAN {
        let y = (v_lo / 1.5..v_hi * 1.5).log_scale();
        chart(&chart_area, x, y, series, &y_desc)?;
    } else {
        // From 0 (or below, for odd data), so that heights compare as ratios.
        let lo = v_lo.min(0.0);
        let hi = if v_hi > lo { v_hi } else { lo + 1.0 };
        let y: RangedCoordf64 = (lo..hi + (hi - lo) * 0.08).into();
        chart(&chart_area, x, y, series, &y_desc)?;
    }
    legend(&legend_area, series)?;
    root.present()
}

fn chart<X, Y>(
    area: &DrawingArea<BitMapBackend, Shift>,
    x: X,
    y: Y,
    series: &[Series],
    y_desc: &str,
) -> Result<(), DrawError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    chart
        .configure_mesh()
        .x_desc("allow-list entries N (log scale)")
        .y_desc(y_desc)
        .x_labels(6)
        .x_label_formatter(&|n| rules_label(n.round() as usize))
        .y_label_formatter(&|v| tick(*v))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 16))
        .draw()?;
    for s in series {
        let c = color(s.contender);
        let style = c.stroke_width(width(s.contender));
        chart.draw_series(LineSeries::new(s.points.iter().map(|p| (p.0, p.1)), style))?;
        chart.draw_series(
            s.points
                .iter()
                .map(|p| Circle::new((p.0, p.1), 4, c.filled())),
        )?;
        chart.draw_series(
            s.points
                .iter()
                .filter(|p| p.3 > p.2)
                .map(|p| ErrorBar::new_vertical(p.0, p.2, p.1, p.3, c.stroke_width(1), 8)),
        )?;
    }
    Ok(())
}

/// The legend in its own column, so it never hides a line.
fn legend(area: &DrawingArea<BitMapBackend, Shift>, series: &[Series]) -> Result<(), DrawError> {
    let top = 40;
    let row = 26;
    for (i, s) in series.iter().enumerate() {
        let y = top + row * i as i32;
        let c = color(s.contender);
        area.draw(&PathElement::new(
            vec![(6, y), (36, y)],
            c.stroke_width(width(s.contender)),
        ))?;
        area.draw(&Circle::new((21, y), 4, c.filled()))?;
        area.draw(&Text::new(
            s.contender.name(),
            (44, y - 8),
            (FAMILY, 15).into_font(),
        ))?;
    }
    Ok(())
}

/// The font registered so far, if any (plotters' font table is global to
/// the process, so it is registered once).
static REGISTERED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Registers DejaVu Sans as plotters' `sans-serif`, once per process.
fn ensure_font() -> Result<(), PlotError> {
    let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if registered.is_some() {
        return Ok(());
    }
    let path = find_font(Path::new(FONT_ROOT))?;
    let bytes = fs::read(&path).map_err(|source| PlotError::ReadFont {
        path: path.clone(),
        source,
    })?;
    // plotters keeps registered fonts for the life of the process and
    // takes them as `&'static`: leak the one copy.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| PlotError::BadFont { path: path.clone() })?;
    *registered = Some(path);
    Ok(())
}

/// Debian's path if `root` is the system's font root and it is there,
/// else the first [`FONT_FILE`] found under `root` (symlinked directories
/// are not followed, so a loop cannot trap the search).
fn find_font(root: &Path) -> Result<PathBuf, PlotError> {
    let debian = Path::new(FONT_PATH);
    if root == Path::new(FONT_ROOT) && debian.is_file() {
        return Ok(debian.to_path_buf());
    }
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(path),
                _ if e.file_name() == FONT_FILE && path.is_file() => return Ok(path),
                _ => {}
            }
        }
    }
    Err(PlotError::NoFont {
        root: root.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::synthetic;
    use super::*;

    #[test]
    fn draws_one_png_per_metric() {
        let r = synthetic();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plots");
        let paths = plots(&r, &out, "compare").unwrap();
        let names: Vec<String> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "compare-packet_rate.png",
                "compare-latency_p99.png",
                "compare-update_full.png"
            ]
        );
        for p in &paths {
            let bytes = fs::read(p).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
            assert!(
                bytes.len() > 10_000,
                "{}: {} bytes",
                p.display(),
                bytes.len()
            );
        }
        // Keep them for a look when asked to.
        if let Some(keep) = std::env::var_os("BULKHEAD_KEEP_PLOTS") {
            for p in &paths {
                fs::copy(p, Path::new(&keep).join(p.file_name().unwrap())).unwrap();
            }
        }
    }

    #[test]
    fn a_contender_decades_off_gets_a_log_axis() {
        let mut r = synthetic();
        for c in r
            .cells
            .iter_mut()
            .filter(|c| c.contender == Contender::IptablesLinear && c.metric == Metric::UpdateFull)
        {
            c.median *= c.rules as f64;
            c.max *= c.rules as f64;
        }
        let dir = tempfile::tempdir().unwrap();
        let paths = plots(&r, dir.path(), "log").unwrap();
        assert_eq!(paths.len(), 3);
        if let Some(keep) = std::env::var_os("BULKHEAD_KEEP_PLOTS") {
            let p = &paths[2];
            fs::copy(p, Path::new(&keep).join(p.file_name().unwrap())).unwrap();
        }
    }

    #[test]
    fn nothing_to_plot_is_no_files() {
        let mut r = synthetic();
        r.cells.retain(|c| c.rules == 0);
        assert!(plotted_metrics(&r).is_empty());
        let dir = tempfile::tempdir().unwrap();
        assert!(plots(&r, dir.path(), "x").unwrap().is_empty());
    }

    #[test]
    fn a_missing_font_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let e = find_font(dir.path()).unwrap_err();
        assert!(e.to_string().contains("fonts-dejavu-core"), "{e}");
        let nested = dir.path().join("truetype/x");
        fs::create_dir_all(&nested).unwrap();
        fs::write(nested.join(FONT_FILE), b"not a font").unwrap();
        assert_eq!(find_font(dir.path()).unwrap(), nested.join(FONT_FILE));
    }

    #[test]
    fn ticks() {
        assert_eq!(tick(0.2), "0.2");
        assert_eq!(tick(100.0), "100");
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(-0.0001), "0");
        assert_eq!(tick(12.345), "12.345");
    }
}
