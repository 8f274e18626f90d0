"""What a file written by an earlier version means: the value of every option it predates.

Every reader of a stored configuration or model description fills it through this module, so
that an old trajectory is read as it was trained. Add a line here whenever an option is added
whose default differs from what earlier files did.
"""
from __future__ import annotations

# a run's configuration (the TrainConfig fields) stored before each option existed
CONFIG = {
    "label_noise_mode": "exact",   # the exact number of labels moved (later default: 'paper')
    "augment_padding": "zero",     # crops padded with zeros (later default: black pixels)
    "groups": "layer",             # per-layer SI groups only (later default: every filter too)
    "compile_mode": "default",
    "checkpoint_metrics": False,   # epoch means only (later default: checkpoint metrics too)
    "space": "sphere",             # before Section 6's whole-space training
    "dtype": "float32",
    "label_noise": 0.0,
    "data_seed": 0,
    "init_seed": 0,
    "data_root": "data",
    "train_subset": None,
    "loss": "ce",                  # before the squared loss
    "optimizer": "sgd",            # before momentum and Adam on the sphere
}

# a model description (``models.model_spec``) stored before each field existed
MODEL_SPEC = {
    "head_bias": False,            # the ConvNet's last layer had no bias
    "conventional": False,
    "conventional_head_bias": True,  # a conventional network's head always had a bias
}


def stored_config(config: dict) -> dict:
    """A stored configuration with the options it predates filled in as they were then."""
    return {**CONFIG, **config}


def stored_model_spec(spec: dict) -> dict:
    """A stored model description with the fields it predates filled in; a 'resnet18' without a
    variant was the post-activation ResNet-18."""
    spec = {**MODEL_SPEC, **spec}
    if spec["name"] == "resnet18" and "variant" not in spec:
        spec["variant"] = "post"
    return spec
