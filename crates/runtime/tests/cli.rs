//! `edge-run` as a user runs it, including bad images and wrong decoders.

use std::path::Path;
use std::process::Command;

use edgewise_tests::root;

/// Runs `edge-run` from the repository root: success, stdout, stderr.
fn edge_run(args: &[&str]) -> (bool, String, String) {
    edgewise_tests::run(env!("CARGO_BIN_EXE_edge-run"), args)
}

const MODEL: &str = "models/ppocr_v4_det.toml";

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn json_lines_timing_and_drawing_for_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["page.png", "text.png"] {
        std::fs::copy(
            root().join("models/.cache/photos").join(name),
            dir.path().join(name),
        )
        .unwrap();
    }
    let drawn = dir.path().join("drawn");
    let (ok, out, err) = edge_run(&[
        MODEL,
        path_str(dir.path()),
        "--draw",
        path_str(&drawn),
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        11,
        "5 boxes on page.png, 6 on text.png:\n{out}"
    );
    for l in &lines {
        assert_eq!(l["label"], "text");
        assert_eq!(l["polygon"].as_array().unwrap().len(), 4);
        let b = &l["box"];
        assert!(b["x1"].as_f64().unwrap() < b["x2"].as_f64().unwrap());
    }
    for name in ["page.png", "text.png"] {
        assert!(
            err.contains(&format!("{name}: "))
                && err.contains("pre ")
                && err.contains("infer ")
                && err.contains("post "),
            "{err}"
        );
        let drawn_image = image::open(drawn.join(name)).unwrap();
        let original = image::open(dir.path().join(name)).unwrap();
        assert_eq!(drawn_image.width(), original.width());
        assert_ne!(
            drawn_image.to_rgb8(),
            original.to_rgb8(),
            "boxes drawn on {name}"
        );
    }
}

#[test]
fn odd_images_give_a_correct_result_or_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, img: image::DynamicImage| {
        let p = dir.path().join(name);
        img.save(&p).unwrap();
        p
    };
    let tiny = write(
        "tiny.png",
        image::DynamicImage::ImageRgb8(image::RgbImage::new(1, 1)),
    );
    let gray = write(
        "gray.png",
        image::open(root().join("models/.cache/photos/page.png"))
            .unwrap()
            .grayscale(),
    );
    let sixteen = write(
        "sixteen.png",
        image::DynamicImage::ImageLuma16(
            image::open(root().join("models/.cache/photos/text.png"))
                .unwrap()
                .to_luma16(),
        ),
    );
    let corrupt = dir.path().join("corrupt.png");
    let bytes = std::fs::read(root().join("models/.cache/photos/page.png")).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let not_image = dir.path().join("notes.jpg");
    std::fs::write(&not_image, "just text").unwrap();

    let (ok, out, err) = edge_run(&[
        MODEL,
        path_str(&tiny),
        path_str(&gray),
        path_str(&sixteen),
        "--threads",
        "1",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("tiny.png: 0 detection(s)"), "{err}");
    let count = |name: &str| out.lines().filter(|l| l.contains(name)).count();
    assert!(
        count("gray.png") >= 4,
        "grayscale page still has its text lines:\n{out}"
    );
    assert!(
        count("sixteen.png") >= 4,
        "16-bit text.png still has its words:\n{out}"
    );

    let (ok, _, err) = edge_run(&[
        MODEL,
        path_str(&corrupt),
        path_str(&not_image),
        path_str(&tiny),
    ]);
    assert!(!ok, "a failed image fails the run");
    assert!(
        err.contains("edge-run: error:") && err.contains("corrupt.png"),
        "{err}"
    );
    assert!(err.contains("notes.jpg"), "{err}");
    assert!(
        err.contains("tiny.png: 0 detection(s)"),
        "the other images still run:\n{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_decoder_that_does_not_fit_the_model_is_named() {
    let (ok, _, err) = edge_run(&[MODEL, "models/.cache/photos/page.png", "--family", "yolov8"]);
    assert!(!ok);
    assert!(
        err.contains("the yolov8 decoder expects one output [1, 4+classes, N]"),
        "{err}"
    );
    assert!(err.contains("sigmoid_0.tmp_0 [1,1,"), "{err}");
    let (ok, _, err) = edge_run(&[
        MODEL,
        "models/.cache/photos/page.png",
        "--family",
        "centernet",
    ]);
    assert!(!ok);
    assert!(err.contains("unknown family"), "{err}");
    let (ok, _, err) = edge_run(&[
        MODEL,
        "models/.cache/photos/page.png",
        "--set",
        "box_thresh=\"high\"",
    ]);
    assert!(!ok);
    assert!(
        err.contains("box_thresh") || err.contains("invalid type"),
        "{err}"
    );
    let (ok, _, err) = edge_run(&[
        "models/.cache/ch_PP-OCRv4_det_infer.onnx",
        "models/.cache/photos/page.png",
    ]);
    assert!(!ok);
    assert!(err.contains("has no manifest"), "{err}");
}

#[test]
fn manifest_overrides_change_the_result() {
    let (ok, out, err) = edge_run(&[
        MODEL,
        "models/.cache/photos/page.png",
        "--set",
        "box_thresh=0.6",
    ]);
    assert!(ok, "{err}");
    // Only the two boxes scoring above 0.6 remain (of five at 0.5).
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn zoo_detectors_run_with_the_manifest_written_beside_them() {
    use edgewise_zoo::{Init, Options, Spec, build, heads};
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        size: 128,
        classes: 3,
        neck_channels: 32,
        seed: 1,
        init: Init::Kaiming,
    };
    for head in heads::NAMES {
        let spec = Spec::parse(&format!("mobilenet_v3_small+fpn+{head}")).unwrap();
        let mut detector = build(&spec, &options).unwrap();
        detector.anonymize();
        let saved = detector
            .save(&dir.path().join(format!("{head}.onnx")))
            .unwrap();
        let (ok, out, err) = edge_run(&[
            path_str(&saved.manifest),
            "models/.cache/photos/astronaut.png",
        ]);
        assert!(ok, "{head}: {err}");
        assert!(err.contains("infer"), "{head}: timing line: {err}");
        for line in out.lines() {
            let d: serde_json::Value = serde_json::from_str(line).unwrap();
            let label = d["label"].as_str().unwrap();
            assert!(
                ["class0", "class1", "class2"].contains(&label),
                "{head}: {line}"
            );
            let b = &d["box"];
            for (k, limit) in [("x1", 512.0), ("y1", 512.0), ("x2", 512.0), ("y2", 512.0)] {
                let v = b[k].as_f64().unwrap();
                assert!(
                    (0.0..=limit).contains(&v),
                    "{head}: box inside the photo: {line}"
                );
            }
        }
    }
}

/// onnxruntime's QDQ model of a zoo detector, with the float model's
/// manifest: edge-run says how it ran and which kernels its convolutions got,
/// and finds boxes either way.
#[test]
fn a_qdq_model_says_how_it_ran() {
    use edgewise_zoo::{Init, Options, Spec, build};
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        size: 128,
        classes: 3,
        neck_channels: 32,
        seed: 1,
        init: Init::Kaiming,
    };
    let spec = Spec::parse("mobilenet_v3_small+fpn+retinanet").unwrap();
    let saved = build(&spec, &options)
        .unwrap()
        .save(&dir.path().join("float.onnx"))
        .unwrap();
    let qdq = dir.path().join("qdq.onnx");
    let out = Command::new("python3")
        .arg(root().join("tests/fixtures/ort_quantize.py"))
        .args([&saved.onnx, &qdq, &dir.path().join("reference.bin")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (mode, expected) in [
        ("float", "run in float (--qdq float)"),
        (
            "integer",
            "run as integer (--qdq integer): 110 convolution(s)",
        ),
    ] {
        let (ok, _, err) = edge_run(&[
            path_str(&qdq),
            "--manifest",
            path_str(&saved.manifest),
            "--qdq",
            mode,
            "models/.cache/photos/astronaut.png",
        ]);
        assert!(ok, "{mode}: {err}");
        assert!(err.contains(expected), "{mode}: {err}");
        let kernels = if mode == "float" {
            "kernels: 0 integer"
        } else {
            "integer, 0 float"
        };
        assert!(err.contains(kernels), "{mode}: {err}");
    }
}

/// `--source`: streams through the pipeline (GStreamer builds only, but for
/// the errors every build gives).
mod stream {
    use super::*;

    #[test]
    fn a_missing_camera_is_named() {
        let (ok, _, err) = edge_run(&[MODEL, "--source", "/dev/video97"]);
        assert!(!ok);
        assert!(
            err.contains("no camera at /dev/video97") && err.contains("v4l2-ctl"),
            "{err}"
        );
        let (ok, _, err) = edge_run(&[MODEL, "--source", "no/such/clip.mp4"]);
        assert!(
            !ok && err.contains("no video file no/such/clip.mp4"),
            "{err}"
        );
    }

    #[cfg(not(feature = "gstreamer"))]
    #[test]
    fn a_build_without_gstreamer_says_how_to_get_it() {
        let (ok, _, err) = edge_run(&[MODEL, "--source", "models/ppocr_v4_det.toml"]);
        assert!(!ok);
        assert!(
            err.contains("--features edgewise-runtime/gstreamer"),
            "{err}"
        );
    }

    /// Photos brought to 640x480 as `f00.png`..., and the video GStreamer
    /// makes of them at 5 frames per second with `encoder` (elements
    /// between the decoded RGB frames and the file).
    #[cfg(feature = "gstreamer")]
    fn video_of_photos(dir: &Path, encoder: &str, file: &str) -> std::path::PathBuf {
        let photos = [
            "astronaut.png",
            "coffee.png",
            "motorcycle_left.png",
            "page.png",
        ];
        for (i, name) in photos.iter().enumerate() {
            let photo = image::open(edgewise_tests::photo(name)).unwrap();
            let frame = photo.resize_exact(640, 480, image::imageops::FilterType::Triangle);
            frame
                .to_rgb8()
                .save(dir.join(format!("f{i:02}.png")))
                .unwrap();
        }
        let video = dir.join(file);
        let status = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(format!(
                "multifilesrc location={}/f%02d.png index=0 stop-index={} caps=image/png,framerate=5/1 ! pngdec ! videoconvert ! {encoder} ! filesink location={}",
                dir.display(),
                photos.len() - 1,
                video.display()
            ).split(' '))
            .status()
            .expect("gst-launch-1.0 runs (scripts/setup.sh installs gstreamer1.0-tools)");
        assert!(status.success());
        video
    }

    /// The figures `--stats-json` wrote.
    #[cfg(feature = "gstreamer")]
    fn read_stats(path: &Path) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// `edge-run --source`'s frame lines as the image lines of `f{frame}.png`.
    #[cfg(feature = "gstreamer")]
    fn as_image_lines(out: &str) -> Vec<edgewise_runtime::selftest::Recorded> {
        let mut lines = Vec::new();
        for line in out.lines() {
            let frame: serde_json::Value = serde_json::from_str(line).unwrap();
            let index = frame["frame"].as_u64().unwrap();
            assert!(frame["latency_ms"].as_f64().unwrap() > 0.0, "{line}");
            for d in frame["detections"].as_array().unwrap() {
                let mut d = d.clone();
                d["image"] = format!("f{index:02}.png").into();
                lines.push(serde_json::from_value(d).unwrap());
            }
        }
        lines
    }

    #[cfg(feature = "gstreamer")]
    #[test]
    fn every_frame_of_a_video_finds_what_its_photo_does() {
        use edgewise_runtime::selftest::{Tolerance, compare};
        let dir = tempfile::tempdir().unwrap();
        // Raw RGB in Matroska: the frames are the photos' pixels exactly.
        let video = video_of_photos(
            dir.path(),
            "video/x-raw,format=RGB ! matroskamux",
            "raw.mkv",
        );
        let model = "models/yolox_ddddocr.toml";
        let stats = dir.path().join("stats.json");
        let (ok, out, err) = edge_run(&[
            model,
            "--source",
            path_str(&video),
            "--threads",
            "2",
            "--stats-json",
            path_str(&stats),
        ]);
        assert!(ok, "{err}");
        assert!(err.contains("not live; every frame"), "{err}");
        let report = read_stats(&stats);
        assert_eq!(
            [
                report["captured"].as_u64(),
                report["processed"].as_u64(),
                report["dropped"].as_u64()
            ],
            [Some(4), Some(4), Some(0)],
            "{report}"
        );
        assert_eq!(out.lines().count(), 4, "a line per frame:\n{out}");
        let from_video = as_image_lines(&out);
        let photos: Vec<String> = (0..4)
            .map(|i| {
                dir.path()
                    .join(format!("f{i:02}.png"))
                    .display()
                    .to_string()
            })
            .collect();
        let mut args = vec![model, "--threads", "2"];
        args.extend(photos.iter().map(String::as_str));
        let (ok, out, err) = edge_run(&args);
        assert!(ok, "{err}");
        let from_photos: Vec<edgewise_runtime::selftest::Recorded> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert!(from_photos.len() >= 4, "{out}");
        let agreement = compare(&from_photos, &from_video, Tolerance::default())
            .unwrap_or_else(|why| panic!("{why}"));
        assert_eq!(agreement.detections, from_photos.len());

        // MJPEG in AVI, as cameras record: lossy, so the same frame count
        // and every frame decoded, with detections close but not equal.
        let mjpeg = video_of_photos(dir.path(), "jpegenc quality=95 ! avimux", "mjpeg.avi");
        let (ok, out, err) = edge_run(&[
            model,
            "--source",
            path_str(&mjpeg),
            "--stride",
            "2",
            "--stats-json",
            path_str(&stats),
        ]);
        assert!(ok, "{err}");
        let report = read_stats(&stats);
        assert_eq!(
            [
                report["captured"].as_u64(),
                report["processed"].as_u64(),
                report["skipped"].as_u64()
            ],
            [Some(4), Some(2), Some(2)],
            "{report}"
        );
        let frames: Vec<u64> = out
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["frame"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(frames, [0, 2]);
    }

    /// The frames of `video`, decoded by GStreamer to `{prefix}NN.png`.
    #[cfg(feature = "gstreamer")]
    fn frames_of(video: &Path, prefix: &Path) -> Vec<image::RgbImage> {
        let status = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(
                format!(
                    "filesrc location={} ! decodebin ! videoconvert ! pngenc ! multifilesink location={}%02d.png",
                    video.display(),
                    prefix.display()
                )
                .split(' '),
            )
            .status()
            .unwrap();
        assert!(status.success());
        (0..)
            .map(|i| std::path::PathBuf::from(format!("{}{i:02}.png", prefix.display())))
            .take_while(|p| p.exists())
            .map(|p| image::open(p).unwrap().to_rgb8())
            .collect()
    }

    /// Mean absolute difference of two images over a rectangle.
    #[cfg(feature = "gstreamer")]
    fn difference(a: &image::RgbImage, b: &image::RgbImage, x: u32, y: u32, w: u32, h: u32) -> f64 {
        let mut sum = 0.0;
        for yy in y..y + h {
            for xx in x..x + w {
                let (p, q) = (a.get_pixel(xx, yy).0, b.get_pixel(xx, yy).0);
                sum += (0..3)
                    .map(|c| (p[c] as f64 - q[c] as f64).abs())
                    .sum::<f64>();
            }
        }
        sum / (3 * w * h) as f64
    }

    /// `--draw out.mp4` with a stream: every processed frame in the video,
    /// at the source's size, with its detections' labels drawn and the
    /// picture otherwise intact; no partial file left beside it.
    #[cfg(feature = "gstreamer")]
    #[test]
    fn a_stream_is_drawn_into_a_video_file() {
        let dir = tempfile::tempdir().unwrap();
        let raw = video_of_photos(
            dir.path(),
            "video/x-raw,format=RGB ! matroskamux",
            "raw.mkv",
        );
        let drawn = dir.path().join("drawn").join("annotated.mp4");
        let (ok, _, err) = edge_run(&[
            MODEL,
            "--source",
            path_str(&raw),
            "--draw",
            path_str(&drawn),
        ]);
        assert!(!ok, "a missing folder is refused before the model loads");
        assert!(err.contains("does not exist"), "{err}");
        std::fs::create_dir(drawn.parent().unwrap()).unwrap();
        let (ok, out, err) = edge_run(&[
            "models/yolox_ddddocr.toml",
            "--source",
            path_str(&raw),
            "--draw",
            path_str(&drawn),
        ]);
        assert!(ok, "{err}");
        assert!(err.contains("wrote 4 annotated frame(s)"), "{err}");
        let names: Vec<_> = std::fs::read_dir(drawn.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["annotated.mp4"]);
        let original = frames_of(&raw, &dir.path().join("original"));
        let annotated = frames_of(&drawn, &dir.path().join("annotated"));
        assert_eq!(annotated.len(), 4);
        let (mut detections, mut labels) = (0, 0);
        for (line, (before, after)) in out.lines().zip(original.iter().zip(&annotated)) {
            assert_eq!(after.dimensions(), (640, 480));
            // Lossy, and with the labels on top, but the source's picture.
            let mut each: Vec<f64> = (0..480)
                .step_by(3)
                .flat_map(|y| (0..640).step_by(3).map(move |x| (x, y)))
                .map(|(x, y)| difference(before, after, x, y, 1, 1))
                .collect();
            each.sort_by(f64::total_cmp);
            let median = each[each.len() / 2];
            assert!(median < 12.0, "median difference {median}");
            let frame: serde_json::Value = serde_json::from_str(line).unwrap();
            for d in frame["detections"].as_array().unwrap() {
                let (x, y) = (
                    d["box"]["x1"].as_f64().unwrap(),
                    d["box"]["y1"].as_f64().unwrap(),
                );
                let (x, y) = (
                    x.round().clamp(0.0, 600.0) as u32,
                    (y.round() - 12.0).clamp(0.0, 468.0) as u32,
                );
                // The filled label, 12 px high, in the class colour.
                detections += 1;
                if difference(before, after, x, y, 40, 12) > 30.0 {
                    labels += 1;
                }
            }
        }
        assert!(
            detections > 0 && 2 * labels >= detections,
            "{labels} of {detections} labels found drawn:\n{out}"
        );
    }

    /// A live source at 60 frames per second against a model that takes
    /// far longer per frame: `--latest` must drop frames and stay current.
    #[cfg(feature = "gstreamer")]
    #[test]
    fn latest_drops_frames_of_a_live_source_that_outpaces_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let stats = dir.path().join("stats.json");
        let (ok, out, err) = edge_run(&[
            MODEL,
            "--threads",
            "1",
            "--source",
            // 6 s: most of it after the model is ready, however busy the machine.
            "videotestsrc is-live=true num-buffers=360 pattern=ball ! video/x-raw,width=640,height=480,framerate=60/1 ! videoconvert ! appsink",
            "--stats-json",
            path_str(&stats),
        ]);
        assert!(ok, "{err}");
        assert!(err.contains("(live; the latest frame"), "{err}");
        let report = read_stats(&stats);
        let count = |k: &str| report[k].as_u64().unwrap();
        assert!(count("dropped") > 0, "{report}");
        assert_eq!(count("processed") as usize, out.lines().count());
        // Every frame captured, in the appsink's queue of one included, is
        // processed or dropped.
        assert_eq!(
            count("captured"),
            count("processed") + count("dropped") + count("skipped") + count("failed"),
            "{report}"
        );
        // Never more than a few frames behind the camera: the model's time
        // (twice: a frame waits while the one before runs) and some slack.
        let infer = report["infer"]["median_ms"].as_f64().unwrap();
        let latency = report["latency"]["median_ms"].as_f64().unwrap();
        assert!(latency < 4.0 * infer + 200.0, "{report}");
    }

    /// Sends SIGTERM to `child`, as systemd stops a service.
    #[cfg(feature = "gstreamer")]
    pub(super) fn terminate(child: &std::process::Child) {
        // SAFETY: kill(2) on our own child's pid, with a valid signal number.
        let sent = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
    }

    /// SIGINT (Ctrl-C, or SIGTERM from systemd) ends an endless stream
    /// cleanly, with the figures of the whole run.
    #[cfg(feature = "gstreamer")]
    #[test]
    fn a_signal_stops_an_endless_stream_with_its_figures() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-run"))
            .current_dir(root())
            .args([
                "models/yolox_ddddocr.toml",
                "--threads",
                "1",
                "--source",
                "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1 ! videoconvert ! appsink",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first frame is out, so the stream is surely running.
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
        assert!(first.starts_with("{\"frame\":"), "{first}");
        terminate(&child);
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("stream, whole run"), "{err}");
    }
}

/// An RTSP server on loopback (scripts/rtsp_server.py, GStreamer's RTSP
/// server through Debian's Python): stops and starts on one port.
#[cfg(feature = "gstreamer")]
mod rtsp {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use super::root;

    fn serve(port: u16) -> Child {
        let mut server = Command::new("/usr/bin/python3")
            .current_dir(root())
            .args(["scripts/rtsp_server.py", "--size", "320x240", "--fps", "15"])
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("Debian's python3 runs (scripts/setup.sh installs python3-gi)");
        let mut line = String::new();
        BufReader::new(server.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("serving rtsp://"), "{line}");
        server
    }

    /// Waits until `done` holds, or panics after a minute naming `what`.
    fn wait_for(what: &str, log: &Mutex<String>, done: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}; edge-run said:\n{}",
                log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn an_rtsp_stream_is_read_and_survives_a_restart_of_its_server() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = serve(port);
        let mut run = Command::new(env!("CARGO_BIN_EXE_edge-run"))
            .current_dir(root())
            .args(["models/yolox_ddddocr.toml", "--threads", "1", "--source"])
            .arg(format!("rtsp://127.0.0.1:{port}/test"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let frames = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = run.stdout.take().unwrap();
        let stderr = run.stderr.take().unwrap();
        let counting = {
            let frames = frames.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let line: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                    assert!(line["frame"].is_u64() && line["detections"].is_array());
                    frames.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let logging = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line.unwrap());
                    log.push('\n');
                }
            })
        };
        wait_for("the first frames", &log, || {
            frames.load(Ordering::Relaxed) >= 5
        });
        server.kill().unwrap();
        server.wait().unwrap();
        wait_for("the loss to be noticed", &log, || {
            log.lock().unwrap().contains("lost")
        });
        let before = frames.load(Ordering::Relaxed);
        let mut server = serve(port);
        wait_for("frames after the restart", &log, || {
            frames.load(Ordering::Relaxed) >= before + 5
        });
        super::stream::terminate(&run);
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = run.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > until {
                run.kill().unwrap();
                panic!("edge-run did not stop on SIGTERM:\n{}", log.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        server.kill().unwrap();
        server.wait().unwrap();
        counting.join().unwrap();
        logging.join().unwrap();
        let log = log.lock().unwrap();
        assert!(status.success(), "{log}");
        assert!(
            log.contains("(live; the latest frame") && log.contains("playing again"),
            "{log}"
        );
        assert!(log.contains("stream, whole run"), "{log}");
    }
}
