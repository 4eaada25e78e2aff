"""The edge diagnostics on the bundled model: tokens that follow an object's sub-pixel moves, and snapping that
helps a render whose edges are in place."""

from editmgt_core import paths
from editmgt_core.evaluation import edge_diagnostics
from editmgt_core.model.loading import load_editor


def test_tokens_follow_sub_pixel_moves_and_snapping_helps_edges_in_place():
    editor = load_editor(paths.BUNDLED_MODEL)
    shifts = edge_diagnostics.token_shifts(editor.vq, 555, 4)
    assert shifts["scenes"] >= 2 and shifts["distinct_grids_median"] > 8
    assert shifts["same_grid_width_px_median"] <= 1.0
    placed = edge_diagnostics.edge_placement(editor, 555, 8)
    assert placed["render_snapped_psnr"] > placed["render_bicubic_psnr"] + 1
    assert placed["render_snapped_sharpness"] > placed["render_bicubic_sharpness"]
    assert placed["decoded_bicubic_psnr"] < placed["render_bicubic_psnr"]  # the tokens' round trip loses detail
