//! ISO 4217 currency codes and the currency table.
//!
//! A [`CurrencyCode`] can only be built from a code that is in the table, so
//! everything downstream (rates, conversions, quotes) can rely on knowing the
//! currency's name and minor units. The table includes every currency the ECB
//! has ever quoted, retired ones (CYP, EEK, LTL, ...) included, so history
//! stays convertible; whether a currency is *still quoted* is a property of
//! the rate data, not of this table.

use std::fmt;
use std::str::FromStr;

use gateway_core::errors::{self, ErrorCode};
use gateway_core::ToProblem;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A validated ISO 4217 alphabetic code that is present in [`CURRENCIES`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CurrencyCode([u8; 3]);

/// Static facts about one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrencyInfo {
    /// The three-letter code.
    pub code: &'static str,
    /// English name.
    pub name: &'static str,
    /// Number of decimal places of the minor unit (2 for cents, 0 for JPY).
    pub minor_units: u32,
    /// `false` for codes ISO has withdrawn (e.g. CYP after the euro).
    pub iso_active: bool,
}

/// Why a string is not a usable currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CurrencyError {
    /// Not three ASCII letters.
    #[error("`{0}` is not a currency code: expected three letters such as USD")]
    Malformed(String),
    /// Well-formed but not a currency Gatehouse knows.
    #[error("`{0}` is not a known ISO 4217 currency")]
    Unknown(String),
}

impl ToProblem for CurrencyError {
    fn code(&self) -> &'static ErrorCode {
        match self {
            CurrencyError::Malformed(_) => &errors::MALFORMED_CURRENCY,
            CurrencyError::Unknown(_) => &errors::UNKNOWN_CURRENCY,
        }
    }
}

impl CurrencyCode {
    /// The euro, the ECB's base and Gatehouse's pivot currency.
    pub const EUR: CurrencyCode = CurrencyCode(*b"EUR");
    /// The US dollar.
    pub const USD: CurrencyCode = CurrencyCode(*b"USD");

    /// Parses a code, accepting lower case, rejecting anything not in the table.
    pub fn parse(s: &str) -> Result<Self, CurrencyError> {
        let t = s.trim();
        let b = t.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            let shown: String = t.chars().take(16).collect();
            return Err(CurrencyError::Malformed(shown));
        }
        let code = [
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ];
        let c = CurrencyCode(code);
        if lookup(&code).is_none() {
            return Err(CurrencyError::Unknown(c.as_str().to_string()));
        }
        Ok(c)
    }

    /// The code's three ASCII letters (for writers that skip `as_str`'s
    /// UTF-8 check).
    pub fn as_bytes(&self) -> &[u8; 3] {
        &self.0
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The table entry for this code.
    pub fn info(&self) -> &'static CurrencyInfo {
        // Construction guarantees presence; the fallback is unreachable.
        lookup(&self.0).unwrap_or(&CURRENCIES[0])
    }

    /// Decimal places of the minor unit.
    pub fn minor_units(&self) -> u32 {
        self.info().minor_units
    }

    /// The day the currency came into being, where Gatehouse knows it
    /// (currencies introduced since the euro); no rate can be older.
    pub fn first_day(&self) -> Option<chrono::NaiveDate> {
        FIRST_DAYS
            .iter()
            .find(|(c, ..)| c.as_bytes() == self.0)
            .and_then(|(_, y, m, d)| chrono::NaiveDate::from_ymd_opt(*y, *m, *d))
    }
}

/// Introduction dates of currencies created since 1999: a rate dated
/// before one of these cannot be genuine.
const FIRST_DAYS: &[(&str, i32, u32, u32)] = &[
    ("EUR", 1999, 1, 1),
    ("TRY", 2005, 1, 1),
    ("RON", 2005, 7, 1),
    ("GHS", 2007, 7, 3),
    ("SSP", 2011, 7, 18),
    ("ZMW", 2013, 1, 1),
    ("BYN", 2016, 7, 1),
    ("MRU", 2018, 1, 1),
    ("STN", 2018, 1, 1),
    ("VES", 2018, 8, 20),
    ("ZWG", 2024, 4, 5),
];

fn lookup(code: &[u8; 3]) -> Option<&'static CurrencyInfo> {
    CURRENCIES
        .binary_search_by(|c| c.code.as_bytes().cmp(code.as_slice()))
        .ok()
        .map(|i| &CURRENCIES[i])
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CurrencyCode {
    type Err = CurrencyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CurrencyCode::parse(s)
    }
}

impl Serialize for CurrencyCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// An ISO 4217 code on the wire: three capital letters.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for CurrencyCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[A-Z]{3}$"))
            .description(Some("ISO 4217 alphabetic code"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for CurrencyCode {}

impl<'de> Deserialize<'de> for CurrencyCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        CurrencyCode::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Every currency in the table.
pub fn all() -> impl Iterator<Item = CurrencyCode> {
    CURRENCIES.iter().map(|c| {
        let b = c.code.as_bytes();
        CurrencyCode([b[0], b[1], b[2]])
    })
}

macro_rules! currencies {
    ($(($code:literal, $name:literal, $minor:literal, $active:literal)),* $(,)?) => {
        /// The currency table, sorted by code (checked by a test).
        pub static CURRENCIES: &[CurrencyInfo] = &[
            $(CurrencyInfo { code: $code, name: $name, minor_units: $minor, iso_active: $active }),*
        ];
    };
}

currencies![
    ("AED", "UAE Dirham", 2, true),
    ("AFN", "Afghani", 2, true),
    ("ALL", "Lek", 2, true),
    ("AMD", "Armenian Dram", 2, true),
    ("ANG", "Netherlands Antillean Guilder", 2, true),
    ("AOA", "Kwanza", 2, true),
    ("ARS", "Argentine Peso", 2, true),
    ("AUD", "Australian Dollar", 2, true),
    ("AWG", "Aruban Florin", 2, true),
    ("AZN", "Azerbaijan Manat", 2, true),
    ("BAM", "Convertible Mark", 2, true),
    ("BBD", "Barbados Dollar", 2, true),
    ("BDT", "Taka", 2, true),
    ("BGN", "Bulgarian Lev", 2, true),
    ("BHD", "Bahraini Dinar", 3, true),
    ("BIF", "Burundi Franc", 0, true),
    ("BMD", "Bermudian Dollar", 2, true),
    ("BND", "Brunei Dollar", 2, true),
    ("BOB", "Boliviano", 2, true),
    ("BRL", "Brazilian Real", 2, true),
    ("BSD", "Bahamian Dollar", 2, true),
    ("BTN", "Ngultrum", 2, true),
    ("BWP", "Pula", 2, true),
    ("BYN", "Belarusian Ruble", 2, true),
    ("BZD", "Belize Dollar", 2, true),
    ("CAD", "Canadian Dollar", 2, true),
    ("CDF", "Congolese Franc", 2, true),
    ("CHF", "Swiss Franc", 2, true),
    ("CLP", "Chilean Peso", 0, true),
    ("CNY", "Yuan Renminbi", 2, true),
    ("COP", "Colombian Peso", 2, true),
    ("CRC", "Costa Rican Colon", 2, true),
    ("CUP", "Cuban Peso", 2, true),
    ("CVE", "Cabo Verde Escudo", 2, true),
    ("CYP", "Cyprus Pound", 2, false),
    ("CZK", "Czech Koruna", 2, true),
    ("DJF", "Djibouti Franc", 0, true),
    ("DKK", "Danish Krone", 2, true),
    ("DOP", "Dominican Peso", 2, true),
    ("DZD", "Algerian Dinar", 2, true),
    ("EEK", "Kroon", 2, false),
    ("EGP", "Egyptian Pound", 2, true),
    ("ERN", "Nakfa", 2, true),
    ("ETB", "Ethiopian Birr", 2, true),
    ("EUR", "Euro", 2, true),
    ("FJD", "Fiji Dollar", 2, true),
    ("FKP", "Falkland Islands Pound", 2, true),
    ("GBP", "Pound Sterling", 2, true),
    ("GEL", "Lari", 2, true),
    ("GHS", "Ghana Cedi", 2, true),
    ("GIP", "Gibraltar Pound", 2, true),
    ("GMD", "Dalasi", 2, true),
    ("GNF", "Guinean Franc", 0, true),
    ("GTQ", "Quetzal", 2, true),
    ("GYD", "Guyana Dollar", 2, true),
    ("HKD", "Hong Kong Dollar", 2, true),
    ("HNL", "Lempira", 2, true),
    ("HRK", "Kuna", 2, false),
    ("HTG", "Gourde", 2, true),
    ("HUF", "Forint", 2, true),
    ("IDR", "Rupiah", 2, true),
    ("ILS", "New Israeli Sheqel", 2, true),
    ("INR", "Indian Rupee", 2, true),
    ("IQD", "Iraqi Dinar", 3, true),
    ("IRR", "Iranian Rial", 2, true),
    ("ISK", "Iceland Krona", 0, true),
    ("JMD", "Jamaican Dollar", 2, true),
    ("JOD", "Jordanian Dinar", 3, true),
    ("JPY", "Yen", 0, true),
    ("KES", "Kenyan Shilling", 2, true),
    ("KGS", "Som", 2, true),
    ("KHR", "Riel", 2, true),
    ("KMF", "Comorian Franc", 0, true),
    ("KRW", "Won", 0, true),
    ("KWD", "Kuwaiti Dinar", 3, true),
    ("KYD", "Cayman Islands Dollar", 2, true),
    ("KZT", "Tenge", 2, true),
    ("LAK", "Lao Kip", 2, true),
    ("LBP", "Lebanese Pound", 2, true),
    ("LKR", "Sri Lanka Rupee", 2, true),
    ("LRD", "Liberian Dollar", 2, true),
    ("LSL", "Loti", 2, true),
    ("LTL", "Lithuanian Litas", 2, false),
    ("LVL", "Latvian Lats", 2, false),
    ("LYD", "Libyan Dinar", 3, true),
    ("MAD", "Moroccan Dirham", 2, true),
    ("MDL", "Moldovan Leu", 2, true),
    ("MGA", "Malagasy Ariary", 2, true),
    ("MKD", "Denar", 2, true),
    ("MMK", "Kyat", 2, true),
    ("MNT", "Tugrik", 2, true),
    ("MOP", "Pataca", 2, true),
    ("MRU", "Ouguiya", 2, true),
    ("MTL", "Maltese Lira", 2, false),
    ("MUR", "Mauritius Rupee", 2, true),
    ("MVR", "Rufiyaa", 2, true),
    ("MWK", "Malawi Kwacha", 2, true),
    ("MXN", "Mexican Peso", 2, true),
    ("MYR", "Malaysian Ringgit", 2, true),
    ("MZN", "Mozambique Metical", 2, true),
    ("NAD", "Namibia Dollar", 2, true),
    ("NGN", "Naira", 2, true),
    ("NIO", "Cordoba Oro", 2, true),
    ("NOK", "Norwegian Krone", 2, true),
    ("NPR", "Nepalese Rupee", 2, true),
    ("NZD", "New Zealand Dollar", 2, true),
    ("OMR", "Rial Omani", 3, true),
    ("PAB", "Balboa", 2, true),
    ("PEN", "Sol", 2, true),
    ("PGK", "Kina", 2, true),
    ("PHP", "Philippine Peso", 2, true),
    ("PKR", "Pakistan Rupee", 2, true),
    ("PLN", "Zloty", 2, true),
    ("PYG", "Guarani", 0, true),
    ("QAR", "Qatari Rial", 2, true),
    ("ROL", "Romanian Leu (old)", 2, false),
    ("RON", "Romanian Leu", 2, true),
    ("RSD", "Serbian Dinar", 2, true),
    ("RUB", "Russian Ruble", 2, true),
    ("RWF", "Rwanda Franc", 0, true),
    ("SAR", "Saudi Riyal", 2, true),
    ("SBD", "Solomon Islands Dollar", 2, true),
    ("SCR", "Seychelles Rupee", 2, true),
    ("SDG", "Sudanese Pound", 2, true),
    ("SEK", "Swedish Krona", 2, true),
    ("SGD", "Singapore Dollar", 2, true),
    ("SHP", "Saint Helena Pound", 2, true),
    ("SIT", "Tolar", 2, false),
    ("SKK", "Slovak Koruna", 2, false),
    ("SLE", "Leone", 2, true),
    ("SOS", "Somali Shilling", 2, true),
    ("SRD", "Surinam Dollar", 2, true),
    ("SSP", "South Sudanese Pound", 2, true),
    ("STN", "Dobra", 2, true),
    ("SYP", "Syrian Pound", 2, true),
    ("SZL", "Lilangeni", 2, true),
    ("THB", "Baht", 2, true),
    ("TJS", "Somoni", 2, true),
    ("TMT", "Turkmenistan New Manat", 2, true),
    ("TND", "Tunisian Dinar", 3, true),
    ("TOP", "Pa'anga", 2, true),
    ("TRL", "Turkish Lira (old)", 0, false),
    ("TRY", "Turkish Lira", 2, true),
    ("TTD", "Trinidad and Tobago Dollar", 2, true),
    ("TWD", "New Taiwan Dollar", 2, true),
    ("TZS", "Tanzanian Shilling", 2, true),
    ("UAH", "Hryvnia", 2, true),
    ("UGX", "Uganda Shilling", 0, true),
    ("USD", "US Dollar", 2, true),
    ("UYU", "Peso Uruguayo", 2, true),
    ("UZS", "Uzbekistan Sum", 2, true),
    ("VES", "Bolivar Soberano", 2, true),
    ("VND", "Dong", 0, true),
    ("VUV", "Vatu", 0, true),
    ("WST", "Tala", 2, true),
    ("XAF", "CFA Franc BEAC", 0, true),
    ("XCD", "East Caribbean Dollar", 2, true),
    ("XOF", "CFA Franc BCEAO", 0, true),
    ("XPF", "CFP Franc", 0, true),
    ("YER", "Yemeni Rial", 2, true),
    ("ZAR", "Rand", 2, true),
    ("ZMW", "Zambian Kwacha", 2, true),
    ("ZWG", "Zimbabwe Gold", 2, true),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in CURRENCIES.windows(2) {
            assert!(w[0].code < w[1].code, "{} before {}", w[0].code, w[1].code);
        }
    }

    #[test]
    fn parses_known_codes_case_insensitively() {
        assert_eq!(CurrencyCode::parse("usd").unwrap(), CurrencyCode::USD);
        assert_eq!(CurrencyCode::parse("JPY").unwrap().minor_units(), 0);
        assert_eq!(
            CurrencyCode::parse("CYP").unwrap().info().name,
            "Cyprus Pound"
        );
        assert_eq!(CurrencyCode::parse("KWD").unwrap().minor_units(), 3);
    }

    #[test]
    fn rejects_malformed_and_unknown_codes() {
        assert_eq!(
            CurrencyCode::parse("US").unwrap_err(),
            CurrencyError::Malformed("US".into())
        );
        assert_eq!(
            CurrencyCode::parse("U$D").unwrap_err().code(),
            "malformed_currency"
        );
        assert_eq!(
            CurrencyCode::parse("XYZ").unwrap_err(),
            CurrencyError::Unknown("XYZ".into())
        );
    }

    #[test]
    fn every_ecb_currency_is_in_the_table() {
        for c in "USD,JPY,BGN,CYP,CZK,DKK,EEK,GBP,HUF,LTL,LVL,MTL,PLN,ROL,RON,SEK,SIT,SKK,CHF,ISK,NOK,HRK,RUB,TRL,TRY,AUD,BRL,CAD,CNY,HKD,IDR,ILS,INR,KRW,MXN,MYR,NZD,PHP,SGD,THB,ZAR".split(',') {
            CurrencyCode::parse(c).unwrap();
        }
    }
}
