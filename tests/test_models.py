"""The networks match the public checkpoints' layouts and render end to end on the CPU."""

import json
from pathlib import Path

import pytest
import torch

from vcam.models import FACEVID2VID, FACEVID2VID_BETA, LIVEPORTRAIT, build_model, demo_config
from vcam.weights import LAYOUTS, build_model_on_meta

REFERENCE = Path(__file__).parent / "reference"


def layout_of(cfg):
    model = build_model_on_meta(cfg)
    files = {}
    for spec in LAYOUTS[cfg.name]:
        entries = files.setdefault(spec.name, {})
        for part in spec.parts:
            state = model.get_submodule(part.target).state_dict()
            entries.setdefault(part.entry or "", {}).update({part.key_prefix + k: list(v.shape) for k, v in state.items()})
    return files


@pytest.mark.parametrize("cfg", [LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA], ids=lambda c: c.name)
def test_state_dicts_match_the_reference_layout_name_for_name(cfg):
    reference = json.loads((REFERENCE / f"{cfg.name}_layout.json").read_text())
    assert layout_of(cfg) == reference


# Shapes read off the public model code and its released configs, independent of the manifest above.
LIVEPORTRAIT_SHAPES = {
    ("appearance_feature_extractor.pth", "first.conv.weight"): [64, 3, 3, 3],
    ("appearance_feature_extractor.pth", "second.weight"): [512, 256, 1, 1],
    ("appearance_feature_extractor.pth", "resblocks_3d.3dr5.conv2.weight"): [32, 32, 3, 3, 3],
    ("motion_extractor.pth", "detector.downsample_layers.0.0.weight"): [96, 3, 4, 4],
    ("motion_extractor.pth", "detector.stages.2.8.grn.gamma"): [1, 1, 1, 1536],
    ("motion_extractor.pth", "detector.fc_kp.weight"): [63, 768],
    ("motion_extractor.pth", "detector.fc_yaw.weight"): [66, 768],
    ("motion_extractor.pth", "detector.fc_scale.bias"): [1],
    ("warping_module.pth", "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"): [64, 110, 3, 3, 3],
    ("warping_module.pth", "dense_motion_network.hourglass.decoder.conv.weight"): [142, 142, 3, 3, 3],
    ("warping_module.pth", "dense_motion_network.mask.weight"): [22, 142, 7, 7, 7],
    ("warping_module.pth", "dense_motion_network.occlusion.weight"): [1, 2272, 7, 7],
    ("warping_module.pth", "dense_motion_network.compress.weight"): [4, 32, 1, 1, 1],
    ("warping_module.pth", "third.conv.weight"): [256, 512, 3, 3],
    ("spade_generator.pth", "fc.weight"): [512, 256, 3, 3],
    ("spade_generator.pth", "G_middle_0.conv_0.weight_orig"): [512, 512, 3, 3],
    ("spade_generator.pth", "G_middle_5.norm_1.mlp_shared.0.weight"): [128, 256, 3, 3],
    ("spade_generator.pth", "up_1.conv_s.weight_orig"): [64, 256, 1, 1],
    ("spade_generator.pth", "conv_img.0.weight"): [12, 64, 3, 3],
}
LIVEPORTRAIT_RETARGETING = {
    ("retarget_shoulder", "mlp.0.weight"): [128, 126],
    ("retarget_shoulder", "mlp.6.weight"): [65, 64],
    ("retarget_mouth", "mlp.0.weight"): [128, 65],
    ("retarget_eye", "mlp.0.weight"): [256, 66],
    ("retarget_eye", "mlp.10.weight"): [63, 64],
}
FACEVID2VID_SHAPES = {
    ("generator", "first.conv.weight"): [64, 3, 3, 3],
    ("generator", "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight"): [64, 80, 3, 3, 3],
    ("generator", "dense_motion_network.mask.weight"): [16, 112, 7, 7, 7],
    ("generator", "dense_motion_network.occlusion.weight"): [1, 1792, 7, 7],
    ("generator", "decoder.fc.weight"): [512, 256, 3, 3],
    ("generator", "decoder.G_middle_5.conv_1.weight_orig"): [512, 512, 3, 3],
    ("generator", "decoder.up_0.norm_s.mlp_shared.0.weight"): [128, 256, 3, 3],
    ("generator", "decoder.up_1.conv_s.weight_orig"): [64, 256, 1, 1],
    ("generator", "decoder.conv_img.weight"): [3, 64, 3, 3],
    ("kp_detector", "predictor.down_blocks.down0.conv.weight"): [64, 3, 3, 3],
    ("kp_detector", "predictor.conv.weight"): [16384, 1024, 1, 1],
    ("kp_detector", "predictor.up_blocks.up4.conv.weight"): [32, 64, 3, 3, 3],
    ("kp_detector", "kp.weight"): [15, 32, 3, 3, 3],
    ("kp_detector", "down.weight"): [3, 1, 13, 13],
    ("he_estimator", "conv1.weight"): [64, 3, 7, 7],
    ("he_estimator", "block1.b1_2.conv2.weight"): [64, 64, 3, 3],
    ("he_estimator", "block2.skip.weight"): [512, 512, 1, 1],
    ("he_estimator", "block5.b5_4.norm3.running_var"): [1024],
    ("he_estimator", "block7.b7_1.conv3.weight"): [2048, 512, 1, 1],
    ("he_estimator", "fc_exp.weight"): [45, 2048],
    ("he_estimator", "fc_roll.weight"): [66, 2048],
}


def test_liveportrait_spot_shapes_from_the_public_code():
    layout = layout_of(LIVEPORTRAIT)
    for (file, key), shape in LIVEPORTRAIT_SHAPES.items():
        assert layout[file][""][key] == shape, key
    for (entry, key), shape in LIVEPORTRAIT_RETARGETING.items():
        assert layout["stitching_retargeting_module.pth"][entry][key] == shape, key


# The Beta release: 7×7 first conv, residual decoder, keypoint detector on the full-size image.
FACEVID2VID_BETA_SHAPES = {
    ("generator", "first.conv.weight"): [64, 3, 7, 7],
    ("generator", "resblocks_2d.2dr5.conv2.weight"): [256, 256, 3, 3],
    ("generator", "up_blocks.1.conv.weight"): [64, 128, 3, 3],
    ("generator", "final.weight"): [3, 64, 7, 7],
    ("kp_detector", "predictor.conv.weight"): [16384, 1024, 1, 1],
}


def test_facevid2vid_spot_shapes_from_the_public_code():
    layout = layout_of(FACEVID2VID)["checkpoint.pth.tar"]
    for (entry, key), shape in FACEVID2VID_SHAPES.items():
        assert layout[entry][key] == shape, key
    beta = layout_of(FACEVID2VID_BETA)["checkpoint.pth.tar"]
    for (entry, key), shape in FACEVID2VID_BETA_SHAPES.items():
        assert beta[entry][key] == shape, key
    assert "down.weight" not in beta["kp_detector"] and not any(k.startswith("decoder.") for k in beta["generator"])


@pytest.mark.parametrize("base", [LIVEPORTRAIT, FACEVID2VID, FACEVID2VID_BETA], ids=lambda c: c.name)
def test_end_to_end_render_at_test_size(base):
    cfg = demo_config(base)
    model = build_model(cfg, seed=3)
    crop = torch.rand(1, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        source = model.prepare_source(crop)
        head = model.head_motion(model.extract_motion(crop))
        image = model.render(source, head)
        turned = model.head_motion(model.extract_motion(crop))
        turned.R = turned.R @ torch.tensor([[0.8660, 0.0, 0.5], [0.0, 1.0, 0.0], [-0.5, 0.0, 0.8660]])  # 30° yaw
        turned.t = turned.t + torch.tensor([[0.3, -0.2, 0.0]])
        image_turned = model.render(source, turned)
    assert image.shape == (1, 3, cfg.output_size, cfg.output_size)
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert (image - image_turned).abs().max() > 1e-4


def test_render_is_batched_and_deterministic():
    cfg = demo_config(LIVEPORTRAIT)
    model = build_model(cfg, seed=5)
    crop = torch.rand(2, 3, cfg.input_size, cfg.input_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        source = model.prepare_source(crop[:1])
        head = model.head_motion(model.extract_motion(crop))
        both = model.render(source, head)
        first = model.render(source, model.head_motion(model.extract_motion(crop[:1])))
    assert torch.allclose(both[:1], first, atol=1e-3)
