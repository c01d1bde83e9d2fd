"""Reading one API page: a cut-off body is worth asking again for, a wrong shape is not."""

from __future__ import annotations

import pytest

from shared.domain.errors import PermanentError
from shared.domain.usage_page import MalformedPage, TruncatedPage, parse_page


def test_a_page_keeps_its_body_and_reads_its_paging() -> None:
    body = b'{"data": [{"company_id": "c-1"}], "page": 2, "has_next_page": false, "total_pages": 2}'
    page = parse_page(2, body)
    assert (page.number, page.body, page.records, page.has_next_page, page.total_pages) == (
        2,
        body,
        [{"company_id": "c-1"}],
        False,
        2,
    )


@pytest.mark.parametrize("total", ['"7"', "true", "null", "1.5"])
def test_a_total_pages_that_is_not_a_whole_number_is_ignored(total: str) -> None:
    body = f'{{"data": [], "has_next_page": false, "total_pages": {total}}}'.encode()
    assert parse_page(1, body).total_pages is None


def test_a_truncated_body_is_not_permanent() -> None:
    with pytest.raises(TruncatedPage) as error:
        parse_page(3, b'{"data": [{"company_')
    assert not isinstance(error.value, PermanentError) and "page 3" in str(error.value)


@pytest.mark.parametrize(
    "body",
    [b"[]", b'{"items": []}', b'{"data": [], "has_next_page": "no"}', b'{"data": {}, "has_next_page": true}'],
)
def test_a_wrong_shape_is_permanent(body: bytes) -> None:
    with pytest.raises(MalformedPage) as error:
        parse_page(1, body)
    assert isinstance(error.value, PermanentError)
