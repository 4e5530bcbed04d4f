"""IIIF manifests in: canvases to samples through a real HTTP server on 127.0.0.1, with scripted failures."""

from __future__ import annotations

import functools
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iconolens.data.coco import read_coco
from iconolens.data.collections import detect_format, load_collection
from iconolens.data.dataset_json import load_dataset_json
from iconolens.data.downloads import Downloader, DownloadSettings
from iconolens.data.iiif import IIIFOptions, read_iiif
from iconolens.data.iiif_site import write_iiif_site
from iconolens.data.presentation3 import validate_presentation3
from iconolens.data.records import Dataset
from iconolens.data.synth import write_synthetic_collection
from iconolens.errors import BadAnnotationError, BadInputError

P2 = "http://iiif.io/api/presentation/2/context.json"
P3 = "http://iiif.io/api/presentation/3/context.json"
#: How long a "sleep" answer waits (the test's teardown wakes it early).
SLEEP_SECONDS = 5.0


# --- the server --------------------------------------------------------------------------------------


class Site:
    """A folder served on 127.0.0.1 that logs requests and can answer chosen paths badly.

    ``script[path]`` is a list of answers used up one per request ("404", "500", "sleep", "truncate"),
    after which the file is served; ``delay[path]`` holds every answer back that many seconds.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self.script: dict[str, list[str]] = {}
        self.delay: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""

    def count(self, path: str) -> int:
        return self.requests.count(path)

    def image_requests(self) -> list[str]:
        return [r for r in self.requests if not r.endswith(".json")]


class _Handler(SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        site: Site = self.server.site  # type: ignore[attr-defined]
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        with site.lock:
            site.requests.append(path)
            answers = site.script.get(path)
            answer = answers.pop(0) if answers else None
        if path in site.delay:
            # Counted while the answer is held back only: once it is sent, the client may ask again before
            # this thread runs on, which is no excess of concurrent downloads.
            with site.lock:
                site.in_flight += 1
                site.max_in_flight = max(site.max_in_flight, site.in_flight)
            site.stop.wait(site.delay[path])
            with site.lock:
                site.in_flight -= 1
        if answer == "sleep":
            site.stop.wait(SLEEP_SECONDS)
            self.close_connection = True
        elif answer == "truncate":
            data = (site.root / path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
        elif answer is not None:
            self.send_error(int(answer))
        else:
            super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left is expected here


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    served = Site(tmp_path / "www")
    served.root.mkdir()
    server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(served.root)))
    server.site = served  # type: ignore[attr-defined]
    served.url = f"http://127.0.0.1:{server.server_port}/"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield served
    served.stop.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Three small synthetic paintings with labels and figure and attribute boxes."""
    return read_coco(write_synthetic_collection(tmp_path_factory.mktemp("synth"), 3, seed=0, image_size=96))


def _options(tmp_path: Path, sleeps: list[float] | None = None, timeout: float = 5.0, attempts: int = 3,
             workers: int = 4, **kwargs: object) -> IIIFOptions:
    download = DownloadSettings(
        timeout=timeout, attempts=attempts, backoff=0.5, workers=workers,
        sleep=sleeps.append if sleeps is not None else (lambda seconds: None),
    )
    return IIIFOptions(cache_dir=tmp_path / "cache", download=download, **kwargs)  # type: ignore[arg-type]


def _publish(site: Site, dataset: Dataset, image_service: bool = True) -> str:
    write_iiif_site(dataset, site.root, site.url, image_service=image_service)
    return site.url + "manifest.json"


def _write_json(site: Site, name: str, document: object) -> str:
    path = site.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return site.url + name


def _close(a: tuple[float, ...], b: tuple[float, ...], tolerance: float = 0.5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b))


def _one_sentence(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text


# --- hand-written manifests ------------------------------------------------------------------------


def _v2_manifest(site: Site, solid_image) -> str:
    """Two canvases twice their image's size; boxes embedded (canvas 1) and in a referenced list (canvas 2).

    The Image API claims level 2 but the server only has the full images, so sized requests get 404.
    """
    base = site.url
    sizes = {1: (40, 30), 2: (64, 48)}
    canvases = []
    for n, (w, h) in sizes.items():
        solid_image(site.root / f"v2/img{n}/full/full/0/default.jpg", w, h)
        canvas_id = f"{base}v2/canvas/{n}"
        canvases.append({
            "@id": canvas_id, "@type": "sc:Canvas", "label": f"page {n}", "width": 2 * w, "height": 2 * h,
            "images": [{
                "@type": "oa:Annotation", "motivation": "sc:painting", "on": canvas_id,
                "resource": {
                    "@id": f"{base}v2/img{n}/full/full/0/default.jpg", "@type": "dctypes:Image", "width": w,
                    "height": h, "service": {
                        "@context": "http://iiif.io/api/image/2/context.json", "@id": f"{base}v2/img{n}",
                        "profile": "http://iiif.io/api/image/2/level2.json",
                    },
                },
            }],
        })
    canvases[0]["metadata"] = [{"label": "Date", "value": "1500"}, {"label": "Subject", "value": "Peter; Paul ;"}]
    canvases[1]["metadata"] = [{
        "label": [{"@value": "Sujet", "@language": "fr"}, {"@value": "Subject", "@language": "en"}],
        "value": [{"@value": "Paul (apôtre)", "@language": "fr"}, {"@value": "Paul", "@language": "en"}],
    }]
    canvases[0]["otherContent"] = [{"@id": f"{base}v2/list/1.json", "@type": "sc:AnnotationList", "resources": [
        {"@type": "oa:Annotation", "motivation": "oa:tagging", "resource": {"@type": "oa:Tag", "chars": "Peter"},
         "on": f"{canvases[0]['@id']}#xywh=10,20,30,40"},
        {"@type": "oa:Annotation", "motivation": "oa:linking", "resource": {"chars": "not a label"},
         "on": f"{canvases[0]['@id']}#xywh=0,0,5,5"},
    ]}]
    _write_json(site, "v2/list/2.json", {"@context": P2, "@id": f"{base}v2/list/2.json", "@type": "sc:AnnotationList",
                                         "resources": [{
        "@type": "oa:Annotation", "motivation": ["oa:commenting"],
        "resource": [{"@type": "dctypes:Text", "format": "text/html", "chars": "<p>Paul</p>"}],
        "on": {"@type": "oa:SpecificResource", "full": canvases[1]["@id"],
               "selector": {"@type": "oa:FragmentSelector", "value": "xywh=8,8,40,20"}},
    }]})
    canvases[1]["otherContent"] = [{"@id": f"{base}v2/list/2.json", "@type": "sc:AnnotationList"}]
    return _write_json(site, "v2/manifest.json", {
        "@context": P2, "@id": f"{base}v2/manifest.json", "@type": "sc:Manifest", "label": "two pages",
        "sequences": [{"@type": "sc:Sequence", "canvases": canvases}],
    })


def _tiny_v3(site: Site, solid_image, labels: list[str], name: str = "tiny") -> str:
    """A Presentation 3 manifest of small static images (no service), one canvas per label."""
    base = site.url
    canvases = []
    for n, label in enumerate(labels, start=1):
        solid_image(site.root / name / f"{n}.png", 8 + n % 3, 6)
        canvas_id = f"{base}{name}/canvas/{n}"
        canvases.append({
            "id": canvas_id, "type": "Canvas", "width": 2 * (8 + n % 3), "height": 12,
            "metadata": [{"label": {"en": ["Subject"]}, "value": {"none": [label]}}],
            "items": [{"id": f"{canvas_id}/p", "type": "AnnotationPage", "items": [{
                "id": f"{canvas_id}/p/a", "type": "Annotation", "motivation": "painting", "target": canvas_id,
                "body": {"id": f"{base}{name}/{n}.png", "type": "Image", "format": "image/png"},
            }]}],
        })
    return _write_json(site, f"{name}/manifest.json", {
        "@context": P3, "id": f"{base}{name}/manifest.json", "type": "Manifest", "label": {"none": [name]},
        "items": canvases,
    })


# --- round trips -------------------------------------------------------------------------------------


def test_synthetic_site_round_trip_gives_back_canvases_labels_boxes_and_sizes(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    url = _publish(site, synthetic)
    manifest = json.loads((site.root / "manifest.json").read_text())
    assert validate_presentation3(manifest) == []

    dataset = load_collection(url, iiif=_options(tmp_path, label_field="Subject"))

    assert dataset.problems == ()
    assert [s.id for s in dataset.samples] == [f"{site.url}canvas/{n}" for n in (1, 2, 3)]
    for sample, original in zip(dataset.samples, synthetic.samples):
        assert (sample.canvas.width, sample.canvas.height) == (2 * original.width, 2 * original.height)
        assert sample.canvas.manifest == url
        assert (sample.width, sample.height) == (original.width, original.height)
        assert sample.canvas_scale() == (2.0, 2.0)
        assert sample.labels == original.labels
        assert [(b.label, b.level) for b in sample.boxes] == [(b.label, b.level) for b in original.boxes]
        assert all(_close(b.xyxy, o.xyxy) for b, o in zip(sample.boxes, original.boxes))
        assert sample.path.is_file() and sample.path.parent == (tmp_path / "cache").resolve()
    assert dataset.classes == tuple(sorted({c for s in synthetic.samples for c in s.labels}))
    assert dataset.multi_label
    # A level-0 service cannot resize: the whole image is asked for, never a sized one.
    assert sorted(site.image_requests()) == [f"/iiif/00000{n}/full/max/0/default.jpg" for n in (1, 2, 3)]


def test_labels_default_to_the_figure_classes_of_the_annotations(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    dataset = read_iiif(_publish(site, synthetic), _options(tmp_path))
    for sample, original in zip(dataset.samples, synthetic.samples):
        assert set(sample.labels) == {b.label for b in original.boxes if b.level == "figure"}


def test_static_image_resources_are_fetched_byte_for_byte(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    dataset = read_iiif(_publish(site, synthetic, image_service=False), _options(tmp_path, label_field="Subject"))
    assert [s.path.read_bytes() for s in dataset.samples] == [s.path.read_bytes() for s in synthetic.samples]
    assert sorted(site.image_requests()) == [f"/images/00000{n}.png" for n in (1, 2, 3)]


def test_a_second_load_fetches_no_image_again(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    url = _publish(site, synthetic)
    first = read_iiif(url, _options(tmp_path, label_field="Subject"))
    fetched = len(site.image_requests())
    second = read_iiif(url, _options(tmp_path, label_field="Subject"))
    assert fetched == 3
    assert len(site.image_requests()) == fetched
    assert [s.path for s in second.samples] == [s.path for s in first.samples]
    assert second.samples == first.samples


def test_iiif_2_manifest_with_sized_requests_refused_falls_back_to_the_full_image(
    site: Site, solid_image, tmp_path: Path
) -> None:
    url = _v2_manifest(site, solid_image)
    dataset = load_collection(url, iiif=_options(tmp_path, label_field="Subject"))

    assert dataset.problems == ()
    assert [s.id for s in dataset.samples] == [f"{site.url}v2/canvas/1", f"{site.url}v2/canvas/2"]
    first, second = dataset.samples
    assert (first.width, first.height, first.canvas.width, first.canvas.height) == (40, 30, 80, 60)
    assert (second.width, second.height, second.canvas.width, second.canvas.height) == (64, 48, 128, 96)
    assert first.labels == ("Peter", "Paul")
    assert second.labels == ("Paul",)  # the English value of the field matched in English
    assert [(b.xyxy, b.label) for b in first.boxes] == [((5.0, 10.0, 20.0, 30.0), "Peter")]
    assert [(b.xyxy, b.label) for b in second.boxes] == [((4.0, 4.0, 24.0, 14.0), "Paul")]
    assert dataset.classes == ("Paul", "Peter")
    assert site.requests.count("/v2/img1/full/!1024,1024/0/default.jpg") == 1
    assert site.requests.count("/v2/img1/full/full/0/default.jpg") == 1


def test_iiif_3_sized_service_language_maps_and_selectors(site: Site, solid_image, tmp_path: Path) -> None:
    """A level-2 service asked for the chosen size; boxes from FragmentSelectors and percent fragments."""
    base = site.url
    solid_image(site.root / "svc/a/full/!32,32/0/default.jpg", 32, 24)  # what the server would resize to
    canvas = f"{base}c/1"
    manifest = {
        "@context": ["http://www.w3.org/ns/anno.jsonld", P3], "id": f"{base}m3.json", "type": "Manifest",
        "items": [{
            "id": canvas, "type": "Canvas", "width": 640, "height": 480,
            "metadata": [{"label": {"de": ["Thema"], "en": ["subject"]},
                          "value": {"de": ["Petrus"], "en": ["<span>Peter &amp; keys</span>", "Paul"]}}],
            "items": [{"id": f"{canvas}/p", "type": "AnnotationPage", "items": [{
                "id": f"{canvas}/p/a", "type": "Annotation", "motivation": "painting", "target": canvas,
                "body": {"id": f"{base}svc/a/full/max/0/default.jpg", "type": "Image",
                         "service": [{"id": f"{base}svc/a", "type": "ImageService3", "profile": "level2"}]},
            }]}],
            "annotations": [{"id": f"{canvas}/tags", "type": "AnnotationPage", "items": [
                {"id": f"{canvas}/t1", "type": "Annotation", "motivation": "tagging",
                 "body": [{"type": "TextualBody", "value": "score 0.9", "purpose": "describing"},
                          {"type": "TextualBody", "value": "keys - Peter", "purpose": "tagging"}],
                 "target": {"type": "SpecificResource", "source": {"id": canvas, "type": "Canvas"},
                            "selector": {"type": "FragmentSelector", "value": "xywh=100,40,200,160"}}},
                {"id": f"{canvas}/t2", "type": "Annotation", "motivation": ["classifying"],
                 "body": {"type": "TextualBody", "value": "Peter"}, "target": f"{canvas}#xywh=percent:50,25,25,50"},
                {"id": f"{canvas}/t3", "type": "Annotation", "motivation": "tagging",
                 "body": {"type": "TextualBody", "value": "whole picture"}, "target": canvas},
                {"id": f"{canvas}/t4", "type": "Annotation", "motivation": "describing",
                 "body": {"type": "TextualBody", "value": "a note"}, "target": f"{canvas}#xywh=0,0,10,10"},
                {"id": f"{canvas}/t5", "type": "Annotation", "motivation": "tagging",
                 "body": {"type": "TextualBody", "value": "elsewhere"}, "target": f"{base}c/2#xywh=0,0,10,10"},
            ]}],
        }],
    }
    url = _write_json(site, "m3.json", manifest)
    dataset = read_iiif(url, _options(tmp_path, size=32, label_field="Subject"))

    assert dataset.problems == ()
    (sample,) = dataset.samples
    assert (sample.width, sample.height) == (32, 24)
    assert sample.canvas_scale() == (20.0, 20.0)
    assert sample.labels == ("Peter & keys", "Paul")
    assert [(b.label, b.level, b.xyxy) for b in sample.boxes] == [
        ("keys - Peter", "attribute", (5.0, 2.0, 15.0, 10.0)),
        ("Peter", "figure", (16.0, 6.0, 24.0, 18.0)),
    ]
    assert site.image_requests() == ["/svc/a/full/!32,32/0/default.jpg"]


@pytest.mark.parametrize("version", [2, 3])
def test_a_collection_reads_each_manifest_and_lists_one_that_is_missing(
    site: Site, synthetic: Dataset, solid_image, tmp_path: Path, version: int
) -> None:
    first = _publish(site, synthetic)
    second = _v2_manifest(site, solid_image)
    missing = site.url + "gone/manifest.json"
    if version == 3:
        document = {"@context": P3, "id": site.url + "collection.json", "type": "Collection",
                    "items": [{"id": u, "type": "Manifest"} for u in (first, missing, second)]}
    else:
        document = {"@context": P2, "@id": site.url + "collection.json", "@type": "sc:Collection",
                    "manifests": [{"@id": u, "@type": "sc:Manifest"} for u in (first, missing, second)]}
    url = _write_json(site, "collection.json", document)

    dataset = load_collection(url, iiif=_options(tmp_path, label_field="Subject"))

    assert [s.canvas.manifest for s in dataset.samples] == [first] * 3 + [second] * 2
    assert [s.id for s in dataset.samples][3:] == [f"{site.url}v2/canvas/1", f"{site.url}v2/canvas/2"]
    (problem,) = dataset.problems
    assert problem.path == missing and "404" in problem.message and _one_sentence(problem.message)


def test_labels_from_a_csv_keyed_by_canvas_id(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    url = _publish(site, synthetic, image_service=False)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"canvas,labels\n{site.url}canvas/1,Baroque; Peter\n{site.url}canvas/2,\n")

    dataset = read_iiif(url, _options(tmp_path, labels_csv=labels))

    assert [(s.id, s.labels) for s in dataset.samples] == [
        (f"{site.url}canvas/1", ("Baroque", "Peter")), (f"{site.url}canvas/2", ()),
    ]
    assert dataset.classes == ("Baroque", "Peter")
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}canvas/3" and "labels CSV" in problem.message
    assert "/images/000003.png" not in site.requests  # a canvas left out is not downloaded


def test_a_labels_csv_naming_no_canvas_of_the_manifest_is_an_error(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    url = _publish(site, synthetic, image_service=False)
    labels = tmp_path / "labels.csv"
    labels.write_text("canvas,labels\nhttp://elsewhere/canvas/1,Peter\n")
    with pytest.raises(BadAnnotationError, match="none of its canvas ids") as error:
        read_iiif(url, _options(tmp_path, labels_csv=labels))
    assert str(labels) in str(error.value)


# --- failures ----------------------------------------------------------------------------------------


def test_an_image_answering_404_is_one_problem_and_the_other_canvases_stay(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    url = _publish(site, synthetic, image_service=False)
    site.script["/images/000002.png"] = ["404"] * 10
    dataset = read_iiif(url, _options(tmp_path, label_field="Subject"))

    assert [s.id for s in dataset.samples] == [f"{site.url}canvas/1", f"{site.url}canvas/3"]
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}images/000002.png"
    assert "404" in problem.message and f"{site.url}canvas/2" in problem.message
    assert _one_sentence(problem.message)
    assert site.count("/images/000002.png") == 1  # a 404 is final: not retried


def test_a_server_error_is_retried_with_exponential_back_off(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    url = _publish(site, synthetic, image_service=False)
    site.script["/images/000001.png"] = ["500", "503"]
    sleeps: list[float] = []
    dataset = read_iiif(url, _options(tmp_path, sleeps=sleeps, label_field="Subject"))

    assert dataset.problems == ()
    assert dataset.samples[0].path.read_bytes() == synthetic.samples[0].path.read_bytes()
    assert site.count("/images/000001.png") == 3
    assert sleeps == [0.5, 1.0]


def test_a_server_error_on_every_attempt_is_a_problem(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    url = _publish(site, synthetic, image_service=False)
    site.script["/images/000003.png"] = ["500"] * 3
    dataset = read_iiif(url, _options(tmp_path, attempts=3))

    assert len(dataset.samples) == 2
    (problem,) = dataset.problems
    assert "500" in problem.message and "tried 3 times" in problem.message
    assert site.count("/images/000003.png") == 3


def test_an_image_that_never_answers_times_out_into_a_problem(site: Site, synthetic: Dataset, tmp_path: Path) -> None:
    url = _publish(site, synthetic, image_service=False)
    site.script["/images/000001.png"] = ["sleep"] * 2
    dataset = read_iiif(url, _options(tmp_path, timeout=0.3, attempts=2))

    assert [s.id for s in dataset.samples] == [f"{site.url}canvas/2", f"{site.url}canvas/3"]
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}images/000001.png"
    assert "no answer within 0.3 s" in problem.message and _one_sentence(problem.message)


def test_a_download_cut_short_is_retried_and_never_cached_as_complete(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    url = _publish(site, synthetic, image_service=False)
    site.script["/images/000001.png"] = ["truncate"]
    site.script["/images/000002.png"] = ["truncate"] * 2
    dataset = read_iiif(url, _options(tmp_path, attempts=2))

    assert dataset.samples[0].path.read_bytes() == synthetic.samples[0].path.read_bytes()
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}images/000002.png" and "closed after" in problem.message
    cache = Downloader(tmp_path / "cache")
    assert not cache.cached_path(f"{site.url}images/000002.png").exists()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(s.path.name for s in dataset.samples)


def test_downloads_run_at_most_workers_at_a_time(site: Site, solid_image, tmp_path: Path) -> None:
    url = _tiny_v3(site, solid_image, ["A"] * 6)
    for n in range(1, 7):
        site.delay[f"/tiny/{n}.png"] = 0.2
    dataset = read_iiif(url, _options(tmp_path, workers=2))
    assert len(dataset.samples) == 6
    assert site.max_in_flight == 2


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "not JSON"),
        ({"@context": P3, "id": "x", "type": "Manifest"}, "no 'items'"),
        ({"@context": P2, "@id": "x", "@type": "sc:Manifest"}, "no 'sequences'"),
        ({"@context": "http://iiif.io/api/presentation/4/context.json", "type": "Manifest", "items": []},
         "version 4 is not supported"),
        ({"images": [], "annotations": [], "categories": []}, "not a IIIF Presentation"),
        ({"@context": P3, "type": "Canvas", "items": []}, "neither a Manifest nor a Collection"),
        ({"@context": P3, "type": "Manifest", "items": [{"type": "Canvas", "width": 5, "height": 5}]}, "no id"),
    ],
)
def test_a_malformed_manifest_is_one_sentence_naming_its_url(
    site: Site, tmp_path: Path, document: object, message: str
) -> None:
    url = _write_json(site, "bad.json", document)
    with pytest.raises(BadAnnotationError) as error:
        read_iiif(url, _options(tmp_path))
    assert str(error.value).startswith(f"{url}: ") and message in str(error.value)
    assert _one_sentence(str(error.value))


def test_a_missing_or_silent_manifest_is_one_sentence(site: Site, tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as missing:
        read_iiif(site.url + "nothing.json", _options(tmp_path))
    assert str(missing.value).startswith(site.url + "nothing.json: ") and "404" in str(missing.value)

    _write_json(site, "slow.json", {"@context": P3, "type": "Manifest", "items": []})
    site.script["/slow.json"] = ["sleep"] * 2
    with pytest.raises(BadInputError, match=r"no answer within 0.3 s \(tried 2 times\)") as silent:
        read_iiif(site.url + "slow.json", _options(tmp_path, timeout=0.3, attempts=2))
    assert _one_sentence(str(missing.value)) and _one_sentence(str(silent.value))


def test_a_canvas_without_image_is_a_problem_and_the_others_stay(site: Site, solid_image, tmp_path: Path) -> None:
    url = _tiny_v3(site, solid_image, ["A", "B"])
    manifest = json.loads((site.root / "tiny/manifest.json").read_text())
    del manifest["items"][1]["items"]
    _write_json(site, "tiny/manifest.json", manifest)

    dataset = read_iiif(url, _options(tmp_path, label_field="Subject"))
    assert [s.labels for s in dataset.samples] == [("A",)]
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}tiny/canvas/2" and "no image" in problem.message


def test_an_image_over_the_pixel_limit_is_a_problem(site: Site, solid_image, tmp_path: Path) -> None:
    url = _v2_manifest(site, solid_image)
    dataset = read_iiif(url, _options(tmp_path), max_pixels=40 * 30)
    assert [s.id for s in dataset.samples] == [f"{site.url}v2/canvas/1"]
    (problem,) = dataset.problems
    assert problem.path == f"{site.url}v2/canvas/2" and "over the limit of 1,200" in problem.message


def test_a_box_outside_the_image_after_scaling_skips_its_canvas(site: Site, solid_image, tmp_path: Path) -> None:
    url = _tiny_v3(site, solid_image, ["A", "B"])
    manifest = json.loads((site.root / "tiny/manifest.json").read_text())
    canvas = manifest["items"][0]["id"]
    manifest["items"][0]["annotations"] = [{"id": f"{canvas}/t", "type": "AnnotationPage", "items": [
        {"id": f"{canvas}/t/1", "type": "Annotation", "motivation": "tagging",
         "body": {"type": "TextualBody", "value": "A"}, "target": f"{canvas}#xywh=0,0,18,40"}]}]
    _write_json(site, "tiny/manifest.json", manifest)

    dataset = read_iiif(url, _options(tmp_path, label_field="Subject"))
    assert [s.labels for s in dataset.samples] == [("B",)]
    (problem,) = dataset.problems
    assert problem.path == canvas and "outside the 9x6 image" in problem.message


# --- format detection and the command line ----------------------------------------------------------


def test_urls_and_iiif_json_files_are_detected_and_a_local_manifest_reads(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    url = _publish(site, synthetic)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    assert detect_format(url) == "iiif"
    assert detect_format(site.root / "manifest.json") == "iiif"
    assert detect_format(coco) == "coco"

    local = load_collection(site.root / "manifest.json", iiif=_options(tmp_path, label_field="Subject"))
    assert [s.labels for s in local.samples] == [s.labels for s in synthetic.samples]
    with pytest.raises(BadInputError, match="IIIF manifests only"):
        load_collection(coco, iiif=IIIFOptions(label_field="Subject"))


def test_data_split_reads_a_manifest_url_with_the_iiif_options(
    site: Site, solid_image, tmp_path: Path, run_cli
) -> None:
    url = _tiny_v3(site, solid_image, ["Peter", "Paul"] * 10)
    code, _, err = run_cli("data", "split", url, "--out", str(tmp_path / "run"), "--label-field", "Subject",
                             "--iiif-cache", str(tmp_path / "cache"), "--iiif-size", "0")
    assert code == 0, err
    dataset = load_dataset_json(tmp_path / "run" / "dataset.json")
    assert len(dataset) == 20 and dataset.classes == ("Paul", "Peter")
    assert {s.id for s in dataset.samples} == {f"{site.url}tiny/canvas/{n}" for n in range(1, 21)}
    assert all(s.canvas is not None and s.canvas.width == 2 * s.width for s in dataset.samples)
    assert [s.split for s in dataset.samples].count("train") == 16

    code, _, err = run_cli("data", "stats", site.url + "missing.json", "--iiif-cache", str(tmp_path / "cache"))
    assert code == 2 and "404" in err and len(err.strip().splitlines()) == 1


def test_data_synth_publishes_a_site_that_data_convert_reads_back(site: Site, tmp_path: Path, run_cli) -> None:
    code, _, err = run_cli("data", "synth", "--out", str(tmp_path / "synth"), "--images", "2", "--size", "96",
                           "--iiif", str(site.root), "--iiif-base-url", site.url)
    assert code == 0, err
    original = read_coco(tmp_path / "synth" / "annotations.json")
    code, _, err = run_cli("data", "convert", site.url + "manifest.json", "--out", str(tmp_path / "back.json"),
                           "--label-field", "Subject", "--iiif-cache", str(tmp_path / "cache"))
    assert code == 0, err
    back = read_coco(tmp_path / "back.json")
    assert [sorted(s.labels) for s in back.samples] == [sorted(s.labels) for s in original.samples]
    assert [[b.xyxy for b in s.boxes] for s in back.samples] == [[b.xyxy for b in s.boxes] for s in original.samples]


def test_round_trip_from_a_iiif_site_through_a_run_to_annotations_on_the_canvas(
    site: Site, synthetic: Dataset, tmp_path: Path
) -> None:
    """Synthetic collection -> IIIF site -> manifest read -> run -> Web Annotations: the boxes that come back
    out are the synthetic COCO boxes in canvas coordinates (twice the image's), to within the outward rounding."""
    from iconolens.data.dataset_json import load_dataset_json, save_dataset_json
    from iconolens.data.web_annotations import annotation_page, boxes_to_annotations

    url = _publish(site, synthetic)
    read = load_collection(url, iiif=_options(tmp_path, label_field="Subject"))
    dataset = load_dataset_json(save_dataset_json(read, tmp_path / "run" / "dataset.json"))  # the run's own copy
    page = annotation_page(boxes_to_annotations(dataset, {s.id: list(s.boxes) for s in dataset.samples}),
                           f"{site.url}annotations/expert")
    by_canvas: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for item in page["items"]:
        canvas, fragment = item["target"].split("#xywh=")
        label = next(body["value"] for body in item["body"] if body.get("purpose") != "describing") \
            if isinstance(item["body"], list) else item["body"]["value"]
        by_canvas.setdefault(canvas, []).append((label, tuple(int(v) for v in fragment.split(","))))
    assert len(by_canvas) == len(synthetic.samples)
    for n, original in enumerate(synthetic.samples, start=1):
        found = sorted(by_canvas[f"{site.url}canvas/{n}"])
        expected = sorted((b.label, (2 * b.x0, 2 * b.y0, 2 * (b.x1 - b.x0), 2 * (b.y1 - b.y0))) for b in original.boxes)
        assert [label for label, _ in found] == [label for label, _ in expected]
        for (_, got), (_, want) in zip(found, expected):
            x, y, w, h = want
            assert got[0] <= x + 1 and got[1] <= y + 1 and got[0] >= x - 2 and got[1] >= y - 2
            assert abs((got[0] + got[2]) - (x + w)) <= 2 and abs((got[1] + got[3]) - (y + h)) <= 2


def test_detector_commands_read_a_manifest_url_as_their_collection(site: Site, synthetic: Dataset, monkeypatch,
                                                                     tmp_path: Path) -> None:
    from iconolens.cli.detect import _dataset

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    dataset, where = _dataset(None, _publish(site, synthetic), None, None)
    assert where.endswith("manifest.json")
    assert [s.canvas.id for s in dataset.samples] == [f"{site.url}canvas/{n}" for n in (1, 2, 3)]
    assert sum(len(s.boxes) for s in dataset.samples) == sum(len(s.boxes) for s in synthetic.samples)
