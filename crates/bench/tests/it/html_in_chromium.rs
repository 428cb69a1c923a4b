//! The HTML report renders in a real browser: headless Chromium lays the
//! page out, every chart has a size, and the screenshot shows the stage
//! colours. The screenshot is kept in `target/test-artifacts/`.

use std::path::Path;
use std::process::Command;

use edgewise_bench::render::charts::STAGE_COLORS;
use edgewise_tests::root;

use super::edge_bench;

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return name;
        }
    }
    panic!("no Chromium found; install Debian's `chromium` (scripts/setup.sh does)");
}

/// Runs headless Chromium with `args` and `url`; returns standard output.
fn headless(args: &[&str], url: &str) -> String {
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--virtual-time-budget=5000",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn url(path: &Path) -> String {
    format!("file://{}", path.canonicalize().unwrap().display())
}

#[test]
fn the_html_report_renders_its_charts_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let (ok, _, err) = edge_bench(&[
        "models/ppocr_v4_det.toml",
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "--input-shape",
        "1x3x320x320",
        "--warmup",
        "1",
        "--runs",
        "2",
        "--save",
        page.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");

    // A probe page beside the report loads it in a frame and writes the
    // laid-out size of every chart into its own DOM, which Chromium dumps.
    let probe = dir.path().join("probe.html");
    std::fs::write(
        &probe,
        r#"<!DOCTYPE html><html><body><pre id="sizes"></pre>
<iframe id="report" src="report.html" style="width:1200px;height:3000px"></iframe>
<script>
document.getElementById('report').addEventListener('load', function () {
  var doc = this.contentDocument;
  var sizes = Array.from(doc.querySelectorAll('figure svg')).map(function (svg) {
    var r = svg.getBoundingClientRect();
    return Math.round(r.width) + 'x' + Math.round(r.height) + ':' + svg.querySelectorAll('rect').length;
  });
  document.getElementById('sizes').textContent = 'charts ' + sizes.join(' ');
});
</script></body></html>"#,
    )
    .unwrap();
    let dom = headless(
        &["--allow-file-access-from-files", "--dump-dom"],
        &url(&probe),
    );
    let line = dom
        .lines()
        .find_map(|l| l.split("charts ").nth(1))
        .unwrap_or_else(|| panic!("the probe saw no charts: {dom}"));
    let sizes: Vec<&str> = line.split('<').next().unwrap().split_whitespace().collect();
    assert_eq!(sizes.len(), 3, "stage chart and two node charts: {line}");
    for size in &sizes {
        let (wh, rects) = size.split_once(':').unwrap();
        let (w, h) = wh.split_once('x').unwrap();
        let (w, h, rects): (u32, u32, u32) = (
            w.parse().unwrap(),
            h.parse().unwrap(),
            rects.parse().unwrap(),
        );
        assert!(w > 300 && h > 100, "chart laid out at {w}x{h}");
        assert!(rects > 5, "chart has bars: {size}");
    }

    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("edge-bench-report.png");
    let _ = std::fs::remove_file(&shot);
    headless(
        &[
            "--window-size=1200,3000",
            &format!("--screenshot={}", shot.display()),
        ],
        &url(&page),
    );
    let image = image::open(&shot)
        .expect("Chromium wrote a screenshot")
        .to_rgb8();
    // Backbone, neck and head each cover a visible area of the screenshot.
    for (stage, color) in [("backbone", 1), ("neck", 2), ("head", 3)] {
        let c = STAGE_COLORS[color];
        let close = |p: &image::Rgb<u8>| {
            p.0.iter()
                .zip([c.0, c.1, c.2])
                .all(|(&a, b)| a.abs_diff(b) <= 4)
        };
        let pixels = image.pixels().filter(|p| close(p)).count();
        assert!(pixels > 2000, "{stage}: only {pixels} pixels of its colour");
    }
}
