"""Group boxes: a box around two distinct figures is a group, a box around one figure is not."""

from __future__ import annotations

from iconolens.detect.groups import group_flags


def test_a_box_around_two_separate_figures_is_a_group() -> None:
    left, right = (0, 0, 10, 30), (20, 0, 30, 30)
    crowd = (0, 0, 30, 30)  # holds both centres (5, 15) and (25, 15); the two overlap nowhere
    assert group_flags([left, right, crowd]) == [False, False, True]


def test_a_box_around_one_figure_is_not_a_group() -> None:
    figure, loose = (10, 10, 20, 40), (5, 5, 25, 45)  # a loose box around one figure, and a far box
    assert group_flags([figure, loose, (60, 0, 70, 30)]) == [False, False, False]


def test_two_boxes_of_the_same_figure_inside_a_larger_box_are_one_figure() -> None:
    # IoU of the two inner boxes: 90 / 110 = 0.82 >= 0.5, the same figure found twice
    a, b, outer = (0, 0, 10, 10), (1, 0, 11, 10), (0, 0, 20, 20)
    assert group_flags([a, b, outer]) == [False, False, False]


def test_nested_boxes_are_not_two_figures() -> None:
    # head inside body inside a loose box: the body holds the head's centre, so they are not distinct figures
    head, body, loose = (4, 0, 8, 4), (0, 0, 12, 30), (0, 0, 14, 34)
    assert group_flags([head, body, loose]) == [False, False, False]


def test_the_larger_box_is_the_group_not_the_figures_it_holds() -> None:
    # only the box around both figures is flagged, wherever it stands in the list
    boxes = [(0, 0, 40, 40), (2, 2, 12, 38), (25, 2, 38, 38)]
    assert group_flags(boxes) == [True, False, False]
    assert group_flags([boxes[1], boxes[0], boxes[2]]) == [False, True, False]
