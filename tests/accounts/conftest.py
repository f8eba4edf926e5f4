import pytest

from tests.accounts.matrix_world import World, build_world


@pytest.fixture
def world() -> World:
    return build_world()
