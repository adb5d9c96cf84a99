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
        if name != "BaseModel":
            assert "**Set-up for the GDW setting:**" in card, name
        for option, default in cls.options.items():
            assert f"| `{option}` | `{default!r}` |" in card


def test_cards_show_no_sphinx_roles_and_no_unpublished_files():
    """The page renders the cards as Markdown: a role such as :func:`x` would show as raw text,
    and a file of this repository or of its reference notes cannot be opened from the book."""
    for name, cls in METHODS.items():
        card = method_card(cls)
        for raw in (":func:", ":meth:", ":class:", ":attr:", ":mod:", "design.md", "shared/", ".md`"):
            assert raw not in card, (name, raw)


def test_role_becomes_code_in_a_card():
    class Stub:
        name, options = "Stub", {}
        __doc__ = "Uses :func:`gdw_iteration` and :meth:`~gdwlib.GDW.step`."

    assert method_card(Stub) == "## Stub\n\nUses `gdw_iteration` and `gdwlib.GDW.step`.\n"


def test_mwnet_and_gdw_cards_list_their_settings_with_the_run_defaults():
    from gdwlib.config import RunConfig

    defaults = RunConfig()
    gdw = method_card(METHODS["GDW"])
    for field in ("vnet_hidden", "vnet_lr", "vnet_weight_decay", "meta_method", "clamp_max", "step_rule",
                  "outer_lr", "omega_lr", "clip", "constraint"):
        assert f"| `{field}` | `{getattr(defaults, field)!r}` |" in gdw, field
    assert "| `outer_lr` | `100.0` |" in gdw  # the public code's CIFAR-10 value, typed here independently
    assert "`step_rule`" not in method_card(METHODS["MWNet"]).split("| setting")[1]


def test_options_are_checked_against_the_method(tmp_path):
    import pytest
    import torch

    from gdwlib.data.build import build_data
    from gdwlib.profiles import profile_config

    config = profile_config("smoke", "fashion-mnist", method="Focal", options={"gama": 2.0})
    with pytest.raises(ValueError, match=r"Focal has no option\(s\) \['gama'\]; its options are \{'gamma': 1.0\}"):
        get_method("Focal")(config, build_data(config), torch.device("cpu"))
