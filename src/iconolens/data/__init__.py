"""iconolens.data: collections of artworks in memory, and the files they come from and go to.

- ``records``: Box, Sample, Problem, Dataset.
- ``collections.load_collection``: any supported format, auto-detected (``folder``, ``csv_labels``,
  ``coco``, ``voc`` for Pascal VOC and People-Art, ``dataset_json`` for a run's ``dataset.json``, ``iiif``
  for IIIF Presentation manifests and collections, their images fetched by ``downloads``).
- ``images``: decoding (``load_image``) and header-only probing (``probe_image``) with the pixel limit.
- ``splits``: seeded stratified train/val/test; ``stats`` and ``attributes``: what a collection holds.
- ``synth``: the synthetic iconography collection; ``iiif_site`` publishes a collection as a static IIIF site.

Submodules are imported where needed, so that importing this package stays cheap.
"""
