"""The registry holds every method of the paper's tables, each documented for the set-up page."""
from gdwlib.methods import METHODS, get_method, method_card

TABLE_NAMES = {"BaseModel", "Fine-tuning", "Co-teach", "GLC", "L2RW", "INSW", "MWNet", "Soft-label", "Gen-label",
               "Focal", "Balanced", "GDW"}  # the row names of the paper's Tables 2-5


def test_every_method_of_the_tables_is_registered_under_its_table_name():
    assert set(METHODS) == TABLE_NAMES
    assert all(cls.name == name for name, cls in METHODS.items())


def test_comparison_methods_say_how_they_were_set_up():
    for name, cls in METHODS.items():
        card = method_card(cls)
        assert card.startswith(f"## {name}\n")
        if name not in ("BaseModel", "MWNet", "GDW"):
            assert "**Set-up for the GDW setting:**" in card, name
        for option, default in cls.options.items():
            assert f"| `{option}` | `{default!r}` |" in card


def test_options_are_checked_against_the_method(tmp_path):
    import pytest
    import torch

    from gdwlib.data.build import build_data
    from gdwlib.profiles import profile_config

    config = profile_config("smoke", "fashion-mnist", method="Focal", options={"gama": 2.0})
    with pytest.raises(ValueError, match=r"Focal has no option\(s\) \['gama'\]; its options are \{'gamma': 1.0\}"):
        get_method("Focal")(config, build_data(config), torch.device("cpu"))
