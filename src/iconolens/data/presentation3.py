"""A structural check of the IIIF Presentation 3 documents iconolens writes.

It checks the parts we emit, so that a mistake shows here rather than as a blank viewer: ``@context`` on the
top-level object, an ``id`` (an absolute URI, unique in the document) and ``type`` on every resource, a language
map as ``label`` of Manifests and Canvases, the nesting Manifest -> Canvas -> AnnotationPage -> Annotation,
integer canvas sizes, motivations from the W3C and IIIF vocabularies (``painting`` only in a canvas's
``items``, never in its ``annotations``), bodies with a type (a ``value`` for text, an ``id`` for images) and
targets that are a URI, optionally with a ``#xywh=x,y,w,h`` fragment of non-negative integers that stays
inside the canvas it names. It is not a full validator of the specification.
"""

from __future__ import annotations

import re
from typing import Any

CONTEXT = "http://iiif.io/api/presentation/3/context.json"

#: Motivations of the W3C Web Annotation vocabulary and the two IIIF adds.
MOTIVATIONS = frozenset({
    "assessing", "bookmarking", "classifying", "commenting", "describing", "editing", "highlighting",
    "identifying", "linking", "moderating", "questioning", "replying", "tagging", "painting", "supplementing",
})

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$")
_XYWH = re.compile(r"^xywh=(\d+),(\d+),(\d+),(\d+)$")


def validate_presentation3(obj: Any) -> list[str]:
    """The problems of a Manifest, Canvas or AnnotationPage (each one sentence with its JSON path); [] if none."""
    problems: list[str] = []
    if not isinstance(obj, dict):
        return ["the document is not a JSON object"]
    context = obj.get("@context")
    contexts = context if isinstance(context, list) else [context]
    if not contexts or contexts[-1] != CONTEXT:
        problems.append(f"$: @context must be (or end with) {CONTEXT}")
    check = _Checker(problems)
    kind = obj.get("type")
    if kind == "Manifest":
        check.manifest(obj, "$")
    elif kind == "Canvas":
        check.canvas(obj, "$")
    elif kind == "AnnotationPage":
        check.page(obj, "$", canvas=None, painting=None)
    else:
        problems.append(f"$: type must be Manifest, Canvas or AnnotationPage, not {kind!r}")
    return problems


class _Checker:
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.ids: set[str] = set()

    def problem(self, where: str, text: str) -> None:
        self.problems.append(f"{where}: {text}")

    def resource(self, obj: Any, where: str, kind: str) -> bool:
        """Whether ``obj`` is an object of type ``kind`` with a fresh absolute-URI id (problems noted)."""
        if not isinstance(obj, dict):
            self.problem(where, f"a {kind} must be a JSON object")
            return False
        if obj.get("type") != kind:
            self.problem(where, f"type must be {kind!r}, not {obj.get('type')!r}")
        ident = obj.get("id")
        if not isinstance(ident, str) or not _SCHEME.match(ident):
            self.problem(where, f"id must be an absolute URI, not {ident!r}")
        elif ident in self.ids:
            self.problem(where, f"id {ident} is used twice")
        else:
            self.ids.add(ident)
        return True

    def label(self, obj: dict, where: str, required: bool) -> None:
        if "label" not in obj:
            if required:
                self.problem(where, "label is missing")
            return
        value = obj["label"]
        if (not isinstance(value, dict) or not value
                or not all(isinstance(k, str) and isinstance(v, list) and v and all(isinstance(s, str) for s in v)
                           for k, v in value.items())):
            self.problem(f"{where}.label", 'must be a language map such as {"en": ["text"]}')

    def items(self, obj: dict, where: str, required: bool = True) -> list:
        value = obj.get("items")
        if value is None and not required:
            return []
        if not isinstance(value, list):
            self.problem(where, "items must be a list")
            return []
        return value

    def manifest(self, obj: dict, where: str) -> None:
        self.resource(obj, where, "Manifest")
        self.label(obj, where, required=True)
        canvases = self.items(obj, where)
        if not canvases:
            self.problem(where, "a Manifest needs at least one Canvas in items")
        for i, canvas in enumerate(canvases):
            self.canvas(canvas, f"{where}.items[{i}]")

    def canvas(self, obj: Any, where: str) -> None:
        if not self.resource(obj, where, "Canvas"):
            return
        self.label(obj, where, required=True)
        size = []
        for key in ("width", "height"):
            value = obj.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                self.problem(where, f"{key} must be a positive integer, not {value!r}")
            else:
                size.append(value)
        canvas = (obj.get("id"), *size) if len(size) == 2 else (obj.get("id"), None, None)
        for i, page in enumerate(self.items(obj, where)):
            self.page(page, f"{where}.items[{i}]", canvas=canvas, painting=True)
        annotations = obj.get("annotations", [])
        if not isinstance(annotations, list):
            self.problem(where, "annotations must be a list of AnnotationPages")
            return
        for i, page in enumerate(annotations):
            self.page(page, f"{where}.annotations[{i}]", canvas=canvas, painting=False)

    def page(self, obj: Any, where: str, canvas: tuple | None, painting: bool | None) -> None:
        """An AnnotationPage, embedded (with items) or, outside a canvas's items, referenced (id and type)."""
        if not self.resource(obj, where, "AnnotationPage"):
            return
        self.label(obj, where, required=False)
        if "items" not in obj:
            if painting:
                self.problem(where, "a canvas's painting AnnotationPage must be embedded with its items")
            return
        for i, annotation in enumerate(self.items(obj, where)):
            self.annotation(annotation, f"{where}.items[{i}]", canvas, painting)

    def annotation(self, obj: Any, where: str, canvas: tuple | None, painting: bool | None) -> None:
        if not self.resource(obj, where, "Annotation"):
            return
        self.label(obj, where, required=False)
        motivation = obj.get("motivation")
        motivations = motivation if isinstance(motivation, list) else [motivation]
        for m in motivations:
            if not isinstance(m, str) or m not in MOTIVATIONS:
                self.problem(f"{where}.motivation", f"{m!r} is not a W3C or IIIF motivation")
        if painting is True and "painting" not in motivations:
            self.problem(f"{where}.motivation", "annotations in a canvas's items must be painting")
        if painting is False and "painting" in motivations:
            self.problem(f"{where}.motivation", "painting annotations belong in the canvas's items, not annotations")
        bodies = obj.get("body")
        if bodies is None:
            self.problem(where, "body is missing")
            bodies = []
        for i, body in enumerate(bodies if isinstance(bodies, list) else [bodies]):
            self.body(body, f"{where}.body" + (f"[{i}]" if isinstance(bodies, list) else ""))
        self.target(obj.get("target"), f"{where}.target", canvas)

    def body(self, obj: Any, where: str) -> None:
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
            self.problem(where, "a body must be an object with a type")
            return
        if obj["type"] == "TextualBody":
            if not isinstance(obj.get("value"), str):
                self.problem(where, "a TextualBody needs a string value")
        elif not isinstance(obj.get("id"), str) or not _SCHEME.match(obj["id"]):
            self.problem(where, f"a {obj['type']} body needs an absolute URI as id")
        for key in ("width", "height"):
            if key in obj and (not isinstance(obj[key], int) or isinstance(obj[key], bool) or obj[key] <= 0):
                self.problem(where, f"{key} must be a positive integer, not {obj[key]!r}")

    def target(self, value: Any, where: str, canvas: tuple | None) -> None:
        if isinstance(value, dict) and value.get("type") == "SpecificResource":
            source = value.get("source")
            value = source.get("id") if isinstance(source, dict) else source
        if not isinstance(value, str) or not _SCHEME.match(value):
            self.problem(where, f"must be a URI (optionally with #xywh=x,y,w,h), not {value!r}")
            return
        source, _, fragment = value.partition("#")
        box = None
        if fragment:
            found = _XYWH.match(fragment)
            if found is None:
                self.problem(where, f"fragment {fragment!r} is not xywh=x,y,w,h with non-negative integers")
                return
            box = [int(v) for v in found.groups()]
            if box[2] == 0 or box[3] == 0:
                self.problem(where, f"region {fragment} has no area")
        if canvas is None:
            return
        canvas_id, width, height = canvas
        if source != canvas_id:
            self.problem(where, f"targets {source}, not the canvas {canvas_id} it is attached to")
        elif box is not None and width is not None and (box[0] + box[2] > width or box[1] + box[3] > height):
            self.problem(where, f"region {fragment} reaches outside the {width}x{height} canvas")
