"""The interactive viewer: a static site of a run's paintings, maps, boxes and measures (``iconolens view``)."""
