"""@flow marks functions, load_flows collects them from real modules; registration errors are clear."""

from __future__ import annotations

import importlib

import pytest

from controller.flows import Flow, FlowError, FlowRegistry, builtin_flows, flow, load_flows, marked_flows
from controller.flows.greeting import greeting


def test_the_decorator_marks_without_registering_anything():
    @flow
    async def bare(call):
        return "bare"

    @flow("named")
    async def some_function(call):
        return "named"

    @flow("voicemail", finish_after_hangup=30)
    async def voicemail(call):
        return None

    assert marked_flows(bare) == (Flow("bare", bare),)
    assert marked_flows(some_function) == (Flow("named", some_function),)
    assert marked_flows(voicemail) == (Flow("voicemail", voicemail, 30),)
    assert marked_flows(greeting) == ()
    assert "bare" not in builtin_flows() and "named" not in load_flows()  # no global registry


async def test_load_flows_collects_a_package_and_its_submodules(write_package):
    name = write_package({
        "__init__.py": """
            from controller.flows import flow

            @flow
            async def sales(call):
                return "sold"
        """,
        "support/__init__.py": "",
        "support/voicemail.py": """
            from controller.flows import flow

            @flow("voicemail", finish_after_hangup=20)
            async def leave_a_message(call):
                return "left"

            async def not_a_flow(call):
                return None
        """,
    })
    registry = load_flows(name)
    assert registry.names == ["assistant", "greeting", "sales", "voicemail"]
    voicemail = registry.get("voicemail")
    assert voicemail is not None and voicemail.finish_after_hangup == 20
    assert voicemail.fn.__module__ == f"{name}.support.voicemail"
    assert await voicemail.fn(None) == "left"
    assert registry.get("greeting").fn is greeting
    assert "voicemail: " in voicemail.describe() and "20 s after the caller hangs up" in voicemail.describe()
    again = load_flows(name)  # collecting twice finds the same flows, never duplicates
    assert again.names == registry.names and again is not registry


def test_several_modules_and_a_flow_imported_into_another_count_once(write_package):
    name = write_package({
        "__init__.py": "",
        "a.py": """
            from controller.flows import flow

            @flow
            async def alpha(call):
                return None
        """,
        "b.py": """
            from controller.flows import flow
            from {pkg}.a import alpha  # imported, not defined here

            @flow
            async def beta(call):
                return None
        """,
    })
    b = importlib.util.find_spec(f"{name}.b").origin
    with open(b) as fh:
        source = fh.read().replace("{pkg}", name)
    with open(b, "w") as fh:
        fh.write(source)
    registry = load_flows(f"{name}.a", f"{name}.b", f"{name}.a")
    assert registry.names == ["alpha", "assistant", "beta", "greeting"]


def test_a_name_used_twice_names_both_places(write_package):
    name = write_package({
        "__init__.py": "",
        "one.py": """
            from controller.flows import flow

            @flow("sales")
            async def first(call):
                return None
        """,
        "two.py": """
            from controller.flows import flow


            @flow("sales")
            async def second(call):
                return None
        """,
    })
    with pytest.raises(FlowError) as error:
        load_flows(name)
    message = str(error.value)
    assert "flow 'sales' is registered twice" in message
    assert f"{name}.one.first" in message and f"{name}/one.py:4" in message
    assert f"{name}.two.second" in message and f"{name}/two.py:5" in message


def test_a_builtin_name_cannot_be_taken_silently(write_package):
    name = write_package({"__init__.py": """
        from controller.flows import flow

        @flow
        async def greeting(call):
            return None
    """})
    with pytest.raises(FlowError, match=r"'greeting' is registered twice: by controller\.flows\.greeting\.greeting"):
        load_flows(name)


def test_only_async_def_is_a_flow():
    def plain(call):
        return None

    async def generator(call):
        yield None

    with pytest.raises(FlowError, match=r"'plain' \(.*\.plain at .*test_registration\.py:\d+\) must be an `async def`"):
        flow(plain)
    with pytest.raises(FlowError, match="must be an `async def`"):
        flow("gen")(generator)
    with pytest.raises(FlowError, match="must be an `async def`"):
        FlowRegistry().register("plain")(plain)
    assert marked_flows(plain) == ()


def test_bad_names_and_grace_periods_are_refused():
    async def fn(call):
        return None

    for bad in ("", "two words", " padded", 42):
        with pytest.raises(FlowError, match="a flow name is a non-empty word"):
            flow(bad)(fn)
    for bad in (-1, float("nan"), float("inf"), 3601, True, "30"):
        with pytest.raises(FlowError, match="finish_after_hangup must be a number of seconds from 0 to 3600"):
            flow("fn", finish_after_hangup=bad)(fn)


def test_registry_register_still_adds_directly():
    registry = FlowRegistry()

    @registry.register("direct", finish_after_hangup=5)
    async def direct(call):
        return None

    assert registry.get("direct") == Flow("direct", direct, 5)
    assert "direct" in registry and len(registry) == 1 and [f.name for f in registry] == ["direct"]
    with pytest.raises(FlowError, match="registered twice"):
        registry.register("direct")(greeting)


def test_the_older_register_hook_still_loads(write_package):
    name = write_package({"__init__.py": """
        async def legacy(call):
            return "legacy"

        def register(registry):
            registry.register("legacy")(legacy)
    """})
    assert "legacy" in load_flows(name)


def test_a_broken_submodule_is_not_hidden(write_package):
    name = write_package({
        "__init__.py": "",
        "fine.py": "",
        "broken/__init__.py": "import no_such_module_for_voxgate_tests\n",
    })
    with pytest.raises(ModuleNotFoundError, match="no_such_module_for_voxgate_tests"):
        load_flows(name)
    with pytest.raises(ModuleNotFoundError, match="no_such_flows_module"):
        load_flows("no_such_flows_module")


def test_a_register_imported_from_elsewhere_is_not_the_hook(write_package):
    name = write_package({
        "__init__.py": "from .helpers import register\n",
        "helpers.py": "def register(thing):\n    raise AssertionError('not a flow hook')\n",
    })
    assert load_flows(name).names == ["assistant", "greeting"]
