"""DOT text and matplotlib PNG rendering of specs."""

import matplotlib.image
import numpy as np

from jaxsafe import load_spec, render_png, to_dot
from jaxsafe.render import edges


def test_dot_marks_initial_accepting_and_violation_states_and_merges_guards():
    spec = load_spec("sg3")
    dot = to_dot(spec)
    assert dot.startswith('digraph "sg3" {') and dot.rstrip().endswith("}")
    assert '__start -> "q0";' in dot
    assert '"q4" [shape=doublecircle];' in dot
    assert '"violation" [shape=octagon, style=filled, fillcolor=tomato];' in dot
    assert '"q1" -> "q3" [label="iron"];' in dot
    assert '"q0" -> "violation" [label="haz"];' in dot
    # every written transition appears once; the sink's implicit self-loop is not drawn
    assert len(edges(spec)) == dot.count(" -> ") - 1 == len(spec.transitions)


def test_png_is_drawn_with_matplotlib(tmp_path):
    path = render_png(load_spec("craftax_armed"), tmp_path / "armed.png")
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert np.asarray(img[..., :3]).std() > 0.05  # not a blank canvas
