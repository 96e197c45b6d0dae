//! A record's document as the provider sent it ([`super::Record::raw`]).

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{value::RawValue, Value};

/// A record's document: a parsed value (webhook payloads, GraphQL nodes, whatever was
/// read as a tree anyway), or the provider's own JSON text of a page entry, kept as it
/// came so a page of a thousand records is not built into trees only to be written out
/// again for Postgres. Both serialise to the same JSON; it always deserialises as a value.
#[derive(Debug, Clone)]
pub enum RawDocument {
    /// A parsed document.
    Value(Value),
    /// A document's JSON text, checked to be well-formed JSON.
    Text(Box<RawValue>),
}

impl RawDocument {
    /// The document as a value (parsed from the text when it is one; text that was checked
    /// at parse time always parses).
    pub fn to_value(&self) -> Cow<'_, Value> {
        match self {
            Self::Value(value) => Cow::Borrowed(value),
            Self::Text(text) => Cow::Owned(serde_json::from_str(text.get()).unwrap_or(Value::Null)),
        }
    }
}

impl From<Value> for RawDocument {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

/// Equal when the documents are equal as JSON values, whatever their form.
impl PartialEq for RawDocument {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl Serialize for RawDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(value) => value.serialize(serializer),
            Self::Text(text) => text.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RawDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::Value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn text_and_value_forms_write_the_same_json_and_compare_equal() {
        let text = RawDocument::Text(
            RawValue::from_string(r#"{"id": 7, "tags": ["a", "b"]}"#.to_owned()).expect("json"),
        );
        let value = RawDocument::from(json!({"id": 7, "tags": ["a", "b"]}));
        assert_eq!(text, value);
        assert_eq!(
            serde_json::to_value(&text).expect("text"),
            serde_json::to_value(&value).expect("value")
        );
        // The text goes out as it came (no re-serialisation).
        assert_eq!(
            serde_json::to_string(&text).expect("text"),
            r#"{"id": 7, "tags": ["a", "b"]}"#
        );
        assert_eq!(text.to_value()["tags"][1], "b");
    }

    #[test]
    fn it_deserialises_as_a_value_inside_a_tagged_enum() {
        #[derive(Deserialize)]
        #[serde(tag = "kind")]
        enum Change {
            Upsert { raw: RawDocument },
        }
        let Change::Upsert { raw } =
            serde_json::from_str(r#"{"kind": "Upsert", "raw": {"id": 1}}"#).expect("parses");
        assert_eq!(raw, RawDocument::from(json!({"id": 1})));
    }
}
