"""Amounts as payment notifications write them, from babel's CLDR data for `payments.locale`.

The text is built in the payment trigger, inside the backend's transaction, so the rules are
installed into the database: one row per ISO 4217 currency (its minor-unit digits, what goes
before and after the number) and a `format_money(amount, currency)` function holding the
locale's separators. Rounding to the currency's digits is half to even, as babel rounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from babel import Locale
from babel.numbers import (
    format_currency,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
    get_minus_sign_symbol,
    list_currencies,
)

# babel writes a code it does not know as itself; this stand-in marks where the code goes.
_PROBE_CODE = "QQQ"
UNKNOWN = ""  # the currency_formats row used for codes babel does not list


@dataclass(frozen=True, slots=True)
class CurrencyFormat:
    code: str
    exponent: int
    prefix: str
    suffix: str


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parts(code: str, locale: str) -> CurrencyFormat | None:
    exponent = get_currency_precision(code)
    zero = "0" + (get_decimal_symbol(locale) + "0" * exponent if exponent else "")
    probe = format_currency(Decimal(0), code, locale=locale)
    prefix, found, suffix = probe.partition(zero)
    if not found:
        return None  # a pattern this table cannot express: such codes format as unknown ones
    return CurrencyFormat(code, exponent, prefix, suffix)


def currency_formats(locale: str) -> list[CurrencyFormat]:
    """Every currency babel lists, plus the row for unknown codes ('¤' stands for the code)."""
    rows = [row for code in sorted(list_currencies()) if (row := _parts(code, locale))]
    unknown = _parts(_PROBE_CODE, locale)
    assert unknown is not None
    rows.append(
        CurrencyFormat(
            UNKNOWN,
            unknown.exponent,
            unknown.prefix.replace(_PROBE_CODE, "¤"),
            unknown.suffix.replace(_PROBE_CODE, "¤"),
        )
    )
    return rows


def format_money_sql(locale: str) -> str:
    """tiffin_rt.format_money(amount, currency): NULL for no amount, NaN or infinity."""
    grouping = Locale.parse(locale).currency_formats["standard"].grouping
    first, rest = int(grouping[0]), int(grouping[1])
    decimal, group = get_decimal_symbol(locale), get_group_symbol(locale)
    minus = get_minus_sign_symbol(locale)
    return f"""
CREATE OR REPLACE FUNCTION tiffin_rt.format_money(p_amount numeric, p_currency text)
RETURNS text LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    f tiffin_rt.currency_formats%ROWTYPE;
    wanted text := upper(coalesce(p_currency, ''));
    scaled numeric;
    units numeric;
    digits text;
    whole text;
    grouped text := '';
    frac text := '';
BEGIN
    IF p_amount IS NULL OR p_amount = 'NaN'::numeric
       OR p_amount IN ('Infinity'::numeric, '-Infinity'::numeric) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO f FROM tiffin_rt.currency_formats c WHERE c.code = wanted AND wanted <> '';
    IF NOT FOUND THEN
        SELECT * INTO f FROM tiffin_rt.currency_formats c WHERE c.code = '';
        f.prefix := replace(f.prefix, '¤', wanted);
        f.suffix := replace(f.suffix, '¤', wanted);
    END IF;
    scaled := abs(p_amount) * power(10::numeric, f.exponent);
    units := round(scaled);
    IF scaled - trunc(scaled) = 0.5 AND mod(units, 2) = 1 THEN
        units := units - 1;  -- half to even
    END IF;
    digits := trunc(units)::text;
    digits := lpad(digits, greatest(length(digits), f.exponent + 1), '0');  -- 5 cents: 0.05
    whole := left(digits, length(digits) - f.exponent);
    IF f.exponent > 0 THEN
        frac := {_literal(decimal)} || right(digits, f.exponent);
    END IF;
    IF length(whole) > {first} THEN
        grouped := {_literal(group)} || right(whole, {first});
        whole := left(whole, length(whole) - {first});
        WHILE length(whole) > {rest} LOOP
            grouped := {_literal(group)} || right(whole, {rest}) || grouped;
            whole := left(whole, length(whole) - {rest});
        END LOOP;
    END IF;
    RETURN CASE WHEN p_amount < 0 AND units > 0 THEN {_literal(minus)} ELSE '' END
        || f.prefix || whole || grouped || frac || f.suffix;
END;
$fn$;
"""


def install_money_sql(locale: str) -> list[str]:
    """Statements that (re)fill the currency table and the function for `locale`."""
    values = ", ".join(
        f"({_literal(r.code)}, {r.exponent}, {_literal(r.prefix)}, {_literal(r.suffix)})"
        for r in currency_formats(locale)
    )
    return [
        "DELETE FROM tiffin_rt.currency_formats",
        "INSERT INTO tiffin_rt.currency_formats (code, exponent, prefix, suffix) VALUES " + values,
        format_money_sql(locale),
    ]
