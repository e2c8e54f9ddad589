//! Linking a conversation to a Pipedrive person (research §2.3): the participant's id becomes a
//! phone number or an e-mail address, that becomes one `GET /api/v2/persons/search`, and the
//! results become a decision: one exact match is linked, several are ambiguous (parked with their
//! candidates), none is unmatched (parked).
//!
//! Phone search in Pipedrive ignores or keeps formatting in undocumented ways (research §7 q4), so
//! the search is wide (the national significant number, `exact_match=false`) and the exactness is
//! ours: a candidate counts only if one of its stored numbers, normalised the same way, is the
//! participant's number.
//!
//! Normalising without a phone-metadata library (research names `phonenumber`; it would bring
//! its whole metadata set for a check we make on both sides alike): digits only, an international
//! prefix (`+` or `00`) or a WhatsApp id gives the number as is, a national number (trunk `0`, or
//! ten digits under calling code 1) takes the company's calling code.

/// Country calling codes of one and two digits (ITU-T E.164 assignments); every other code has
/// three. The set is prefix-free, so a number's code is found by its first digits.
const SHORT_CALLING_CODES: &[&str] = &[
    "1", "7", "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45",
    "46", "47", "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63",
    "64", "65", "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

/// A phone number in E.164 form: country code and national number, digits only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Phone(String);

impl Phone {
    /// `+` and the digits.
    pub fn e164(&self) -> String {
        format!("+{}", self.0)
    }

    /// The digits, country code first.
    pub fn digits(&self) -> &str {
        &self.0
    }

    /// The country calling code.
    pub fn calling_code(&self) -> &str {
        let two = &self.0[..2.min(self.0.len())];
        let one = &self.0[..1];
        if SHORT_CALLING_CODES.contains(&one) {
            one
        } else if SHORT_CALLING_CODES.contains(&two) {
            two
        } else {
            &self.0[..3.min(self.0.len())]
        }
    }

    /// The national significant number: the digits after the calling code.
    pub fn national(&self) -> &str {
        &self.0[self.calling_code().len()..]
    }
}

/// Who a participant is, for the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A phone number (every WhatsApp id with a number in it).
    Phone(Phone),
    /// An e-mail address, lowercased.
    Email(String),
}

/// How numbers without an international prefix are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRules<'a> {
    /// The company's country calling code (`"44"`, `"1"`), for national numbers.
    pub calling_code: Option<&'a str>,
}

/// What a WhatsApp id (`JID`) says: its user part, without a `:device` suffix; `None` for ids
/// that carry no phone number (`@lid`, groups, broadcasts).
fn whatsapp_user(id: &str) -> Option<Option<&str>> {
    let (user, server) = id.rsplit_once('@')?;
    match server.to_ascii_lowercase().as_str() {
        "s.whatsapp.net" | "c.us" => Some(Some(user.split(':').next().unwrap_or(user))),
        "lid" | "g.us" | "broadcast" | "newsletter" => Some(None),
        _ => None,
    }
}

/// A phone number as typed anywhere (`+44 7700 900123`, `0044 7700 900123`, `07700 900123`,
/// `(415) 555-0100`, `tel:+1-415-555-0100`, `447700900123@s.whatsapp.net`), normalised; `None` if
/// it is no phone number (letters in it, too few or too many digits, a national number without a
/// calling code to put in front).
pub fn normalize_phone(raw: &str, rules: PhoneRules<'_>) -> Option<Phone> {
    let raw = raw.trim();
    if let Some(user) = whatsapp_user(raw) {
        // A WhatsApp id's user part is the international number without `+`.
        let user = user?;
        if !user.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return valid(user.to_owned());
    }
    let raw = raw
        .strip_prefix("tel:")
        .or_else(|| raw.strip_prefix("TEL:"))
        .unwrap_or(raw);
    // An extension is not part of the number people store for a chat.
    let raw = raw
        .split([';', ','])
        .next()
        .unwrap_or(raw)
        .split(" ext")
        .next()
        .unwrap_or(raw)
        .split(" x")
        .next()
        .unwrap_or(raw);
    if !raw
        .chars()
        .all(|c| c.is_ascii_digit() || " +-.()/\u{a0}".contains(c))
    {
        return None;
    }
    let plus = raw.trim_start().starts_with('+');
    // "+44 (0)20 ...": the trunk digit people write inside an international number.
    let raw = if plus {
        raw.replacen("(0)", "", 1)
    } else {
        raw.to_owned()
    };
    if raw.chars().filter(|c| *c == '+').count() > usize::from(plus) {
        return None;
    }
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if plus {
        return valid(digits);
    }
    if let Some(international) = digits.strip_prefix("00") {
        return valid(international.to_owned());
    }
    let code = rules.calling_code?;
    if code == "1" {
        // North America has no trunk 0: ten digits are national, eleven with a leading 1 are
        // the full number.
        return match digits.len() {
            10 => valid(format!("1{digits}")),
            11 if digits.starts_with('1') => valid(digits),
            _ => None,
        };
    }
    // A trunk `0` (most of Europe, Brazil, ...) is dropped; Italy keeps its 0 after the code.
    let national = if code == "39" {
        digits.as_str()
    } else {
        digits.strip_prefix('0')?
    };
    valid(format!("{code}{national}"))
}

/// E.164 allows 15 digits at most; 8 is below any real full number.
fn valid(digits: String) -> Option<Phone> {
    (8..=15).contains(&digits.len()).then_some(Phone(digits))
}

/// An e-mail address, lowercased; `None` if it does not look like one.
pub fn normalize_email(raw: &str) -> Option<String> {
    let raw = raw.trim().trim_start_matches("mailto:");
    let (local, domain) = raw.rsplit_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !raw
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>');
    ok.then(|| raw.to_lowercase())
}

/// What a participant id is: a WhatsApp id or phone number, else an e-mail address. A WhatsApp
/// id without a number (`@lid`) is neither.
pub fn identify(participant_id: &str, rules: PhoneRules<'_>) -> Option<Identity> {
    let id = participant_id.trim();
    if let Some(user) = whatsapp_user(id) {
        return user
            .and_then(|_| normalize_phone(id, rules))
            .map(Identity::Phone);
    }
    if let Some(phone) = normalize_phone(id, rules) {
        return Some(Identity::Phone(phone));
    }
    normalize_email(id).map(Identity::Email)
}

/// The parameters of one `GET /api/v2/persons/search`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// `term`.
    pub term: String,
    /// `fields`: `phone` or `email`.
    pub field: &'static str,
    /// `exact_match`.
    pub exact_match: bool,
}

/// The one search for an identity: a phone by its national significant number, not exact (stored
/// numbers come in every format); an e-mail exactly.
pub fn search_query(identity: &Identity) -> SearchQuery {
    match identity {
        Identity::Phone(phone) => SearchQuery {
            term: phone.national().to_owned(),
            field: "phone",
            exact_match: false,
        },
        Identity::Email(email) => SearchQuery {
            term: email.clone(),
            field: "email",
            exact_match: true,
        },
    }
}

/// A person the search found (`data.items[].item`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The person's id.
    pub person_id: i64,
    /// The person's name.
    pub name: String,
    /// Their organization, if any.
    pub org_id: Option<i64>,
    /// Their phone numbers, as stored.
    pub phones: Vec<String>,
    /// Their e-mail addresses, as stored.
    pub emails: Vec<String>,
}

/// What the search results mean for a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Exactly one person has the participant's number or address.
    Linked(Candidate),
    /// Several do: parked until a person picks one.
    Ambiguous(Vec<Candidate>),
    /// Nobody does: parked (or a person is created, if the company opted in).
    Unmatched,
}

/// Keeps the candidates that really have `identity` (the same number after normalising, or the
/// same address ignoring case) and decides.
pub fn decide(identity: &Identity, found: &[Candidate], rules: PhoneRules<'_>) -> Decision {
    let mut exact: Vec<Candidate> = found
        .iter()
        .filter(|candidate| match identity {
            Identity::Phone(phone) => candidate
                .phones
                .iter()
                .any(|stored| normalize_phone(stored, rules).as_ref() == Some(phone)),
            Identity::Email(email) => candidate
                .emails
                .iter()
                .any(|stored| normalize_email(stored).as_ref() == Some(email)),
        })
        .cloned()
        .collect();
    exact.sort_by_key(|c| c.person_id);
    exact.dedup_by_key(|c| c.person_id);
    match exact.len() {
        0 => Decision::Unmatched,
        1 => Decision::Linked(exact.remove(0)),
        _ => Decision::Ambiguous(exact),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const UK: PhoneRules<'static> = PhoneRules {
        calling_code: Some("44"),
    };
    const US: PhoneRules<'static> = PhoneRules {
        calling_code: Some("1"),
    };
    const NONE: PhoneRules<'static> = PhoneRules { calling_code: None };

    fn e164(raw: &str, rules: PhoneRules<'_>) -> Option<String> {
        normalize_phone(raw, rules).map(|p| p.e164())
    }

    #[test]
    fn the_formats_people_and_whatsapp_use() {
        for raw in [
            "+44 7700 900123",
            "+44 (0)7700 900123",
            "0044 7700 900123",
            "07700 900123",
            "447700900123@s.whatsapp.net",
            "447700900123:12@s.whatsapp.net",
            "447700900123@c.us",
            "tel:+44-7700-900-123",
            "+44.7700.900.123",
        ] {
            assert_eq!(e164(raw, UK).as_deref(), Some("+447700900123"), "{raw}");
        }
        assert_eq!(e164("(415) 555-0100", US).as_deref(), Some("+14155550100"));
        assert_eq!(e164("1 415 555 0100", US).as_deref(), Some("+14155550100"));
        assert_eq!(
            e164("+1 (415) 555-0100", NONE).as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            e164("(415) 555-0100", NONE),
            None,
            "national, no calling code known"
        );
        assert_eq!(
            e164(
                "06 12 34 56 78",
                PhoneRules {
                    calling_code: Some("33")
                }
            )
            .as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            e164(
                "06 1234 5678",
                PhoneRules {
                    calling_code: Some("39")
                }
            )
            .as_deref(),
            Some("+390612345678")
        );
    }

    #[test]
    fn what_is_no_phone_number() {
        for raw in [
            "",
            "hello",
            "+44 77OO 900123",
            "12345",
            "+1234567890123456",
            "123@lid",
            "120363@g.us",
            "+44+7700900123",
        ] {
            assert_eq!(normalize_phone(raw, UK), None, "{raw:?}");
        }
        assert_eq!(identify("123456789@lid", UK), None);
    }

    #[test]
    fn the_calling_code_and_national_number() {
        let cases = [
            ("+447700900123", "44", "7700900123"),
            ("+14155550100", "1", "4155550100"),
            ("+5544999999999", "55", "44999999999"),
            ("+35312345678", "353", "12345678"),
            ("+79161234567", "7", "9161234567"),
        ];
        for (raw, code, national) in cases {
            let phone = normalize_phone(raw, NONE).unwrap();
            assert_eq!(
                (phone.calling_code(), phone.national()),
                (code, national),
                "{raw}"
            );
        }
    }

    #[test]
    fn identities_and_their_search() {
        let phone = identify("447700900123@s.whatsapp.net", UK).unwrap();
        assert_eq!(
            search_query(&phone),
            SearchQuery {
                term: "7700900123".to_owned(),
                field: "phone",
                exact_match: false
            }
        );
        let email = identify(" Ana.Silva@Example.COM ", UK).unwrap();
        assert_eq!(email, Identity::Email("ana.silva@example.com".to_owned()));
        assert!(search_query(&email).exact_match);
        assert_eq!(identify("customer-42", UK), None);
    }

    fn candidate(id: i64, phones: &[&str], emails: &[&str]) -> Candidate {
        Candidate {
            person_id: id,
            name: format!("Person {id}"),
            org_id: None,
            phones: phones.iter().map(|p| (*p).to_owned()).collect(),
            emails: emails.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn one_exact_match_links_several_are_ambiguous_none_is_unmatched() {
        let ana = identify("+44 7700 900123", UK).unwrap();
        // The wide search also finds a number that merely contains the national digits.
        let found = [
            candidate(1, &["07700 900123"], &[]),
            candidate(2, &["+44 17700 9001234"], &[]),
        ];
        assert_eq!(decide(&ana, &found, UK), Decision::Linked(found[0].clone()));
        let twice = [
            candidate(1, &["07700 900123"], &[]),
            candidate(3, &["+447700900123", "020 7946 0000"], &[]),
        ];
        assert_eq!(
            decide(&ana, &twice, UK),
            Decision::Ambiguous(twice.to_vec())
        );
        assert_eq!(decide(&ana, &found[1..], UK), Decision::Unmatched);
        let email = identify("ana@example.com", UK).unwrap();
        let by_email = [
            candidate(4, &[], &["ANA@example.com"]),
            candidate(5, &[], &["ana@example.com.br"]),
        ];
        assert_eq!(
            decide(&email, &by_email, UK),
            Decision::Linked(by_email[0].clone())
        );
    }

    fn separators() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["", " ", "-", ".", " - "]), 0..=12)
            .prop_map(|v| v.concat())
    }

    /// Inserts separators between the digits of `digits` (a few of them).
    fn formatted(digits: &str, seps: &str) -> String {
        let mut out = String::new();
        let mut seps = seps.chars();
        for (i, d) in digits.chars().enumerate() {
            out.push(d);
            if i % 3 == 2
                && let Some(s) = seps.next()
            {
                out.push(s);
            }
        }
        out
    }

    proptest! {
        /// Any international number, however it is written (`+`, `00`, a WhatsApp id, spaces,
        /// dashes, dots, brackets), normalises to the same digits.
        #[test]
        fn every_writing_of_a_number_is_the_same_number(
            digits in "[1-9][0-9]{7,14}",
            seps in separators(),
            device in 0u8..20,
        ) {
            let expected = Some(digits.clone());
            let pretty = formatted(&digits, &seps);
            let writings = [
                format!("+{pretty}"),
                format!("00{pretty}"),
                format!("  +{}  ", pretty.replace('-', " ")),
                format!("{digits}@s.whatsapp.net"),
                format!("{digits}:{device}@s.whatsapp.net"),
                format!("tel:+{pretty}"),
            ];
            for writing in &writings {
                let got = normalize_phone(writing, UK).map(|p| p.digits().to_owned());
                prop_assert_eq!(&got, &expected, "{}", writing);
            }
        }

        /// Normalising is idempotent: the E.164 form of a number is that number.
        #[test]
        fn normalising_twice_changes_nothing(raw in "[+0-9 ().-]{0,24}") {
            for rules in [UK, US, NONE] {
                if let Some(phone) = normalize_phone(&raw, rules) {
                    prop_assert_eq!(normalize_phone(&phone.e164(), rules), Some(phone.clone()));
                    prop_assert!((8..=15).contains(&phone.digits().len()));
                    prop_assert_eq!(format!("{}{}", phone.calling_code(), phone.national()), phone.digits());
                }
            }
        }

        /// A national number and its international writing are one number.
        #[test]
        fn national_and_international_agree(national in "[1-9][0-9]{8,9}", seps in separators()) {
            let uk_national = formatted(&format!("0{national}"), &seps);
            prop_assert_eq!(
                normalize_phone(&uk_national, UK),
                normalize_phone(&format!("+44 {national}"), NONE)
            );
        }

        /// Nothing with a letter in it is a phone number, and nothing panics.
        #[test]
        fn text_is_never_a_number(raw in ".*[a-wyzA-WYZ].*") {
            let lower = raw.trim().to_lowercase();
            prop_assume!(!lower.starts_with("tel:") && !raw.contains('@') && !raw.contains(';') && !raw.contains(',') && !raw.to_lowercase().contains(" x") && !raw.contains(" ext"));
            prop_assert_eq!(normalize_phone(&raw, UK), None);
        }
    }
}
