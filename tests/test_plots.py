"""The derivation pages' scheme (the paper's Figure 2 in the three-step loop), drawn at the book's
width: every label inside its box and every line inside the axes."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from gdwlib.book import FIGURE_WIDTH_IN  # noqa: E402
from gdwlib.plots import draw_two_stage_scheme  # noqa: E402


def test_the_scheme_fits_its_labels_in_its_boxes_at_the_books_width():
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH_IN, 4.4))
    draw_two_stage_scheme(ax)
    fig.tight_layout()   # as the page draws it
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [Bbox(ax.transData.transform([(p.get_x(), p.get_y()), (p.get_x() + p.get_width(), p.get_y() + p.get_height())]))
             for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == 10
    texts = [t for t in ax.texts if t.get_ha() == "center" and t.get_va() == "center"]
    assert len(texts) == len(boxes)
    for text in texts:
        extent = text.get_window_extent(renderer)
        home = [b for b in boxes if b.contains(*extent.get_points().mean(0))]
        assert len(home) == 1, text.get_text()
        assert home[0].x0 <= extent.x0 and extent.x1 <= home[0].x1, f"{text.get_text()!r} wider than its box"
        assert home[0].y0 <= extent.y0 and extent.y1 <= home[0].y1, f"{text.get_text()!r} taller than its box"
        assert text.get_fontsize() >= 10
    for line in ax.lines:   # drawn clipped to the axes: a line beyond them is cut off
        x0, y0, x1, y1 = line.get_window_extent(renderer).extents
        assert ax.bbox.x0 <= x0 and x1 <= ax.bbox.x1, "a line runs out of the axes"
    plt.close(fig)
