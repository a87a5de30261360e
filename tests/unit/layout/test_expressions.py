import pytest

from dim.layout.expressions import ExpressionError, compile_expression, compile_template


@pytest.mark.parametrize(
    ("text", "nums", "index", "expected"),
    [
        ("n1", (7,), 0, 7),
        ("(n2-1)*14+n3", (3, 2, 5), 0, 19),
        ("i + 10", (), 5, 15),
        ("n1 // 3", (10,), 0, 3),
        ("n1 % 3", (10,), 0, 1),
        ("-n1 + 20", (4,), 0, 16),
        ("2*(n1+1)*(n2+1)", (1, 2), 0, 12),
    ],
)
def test_expression_evaluates_integer_arithmetic(text, nums, index, expected):
    assert compile_expression(text)(nums, index) == expected


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "n1.real",
        "[n1]",
        "n1 ** 2",
        "f(n1)",
        "n1 if n1 else 2",
        "'a'",
        "1.5",
        "n1 < 2",
        "lambda: 1",
    ],
)
def test_expression_refuses_anything_but_arithmetic(text):
    with pytest.raises(ExpressionError):
        compile_expression(text)


def test_true_division_is_refused_with_a_hint():
    with pytest.raises(ExpressionError, match="//"):
        compile_expression("n1 / 2")


def test_unknown_name_is_refused():
    with pytest.raises(ExpressionError, match="unknown name 'x'"):
        compile_expression("x + 1")


def test_division_by_zero_is_an_expression_error():
    evaluate = compile_expression("n1 // (n2 - 2)")
    with pytest.raises(ExpressionError, match="division by zero"):
        evaluate((4, 2), 0)


def test_missing_number_in_node_name_is_reported():
    with pytest.raises(ExpressionError, match="only 1 number"):
        compile_expression("n2")((1,), 0)


def test_template_renders_fields_widths_and_name():
    template = compile_template("10.0.{n1}.{(n2-1)*14+n3}")
    assert template.render((3, 2, 5), 0, "s03c2b05") == "10.0.3.19"
    assert compile_template("{name}-ib").render((1,), 0, "n01") == "n01-ib"
    assert compile_template("node{i+1:03}").render((), 6, "x") == "node007"
    assert compile_template("bmc{n1:2}").render((5,), 0, "x") == "bmc05"


@pytest.mark.parametrize("text", ["10.0.{n1", "10.0.n1}", "{n1:abc}", "{name:3}"])
def test_malformed_template_is_refused(text):
    with pytest.raises(ExpressionError):
        compile_template(text)
