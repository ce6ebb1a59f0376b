"""The tests. Their shared helpers (``tests/support``) assert as tests do: pytest
rewrites their asserts too, registered before any of them is imported."""

import pytest

pytest.register_assert_rewrite("tests.support")
