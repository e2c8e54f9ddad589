//! Tool arguments that are validated by the model, not by serde.
//!
//! A derived `Deserialize` stops at the first bad field. The model's `parse` functions report
//! every problem at once with its JSON path, which is what a model needs to fix its call in one
//! go. So tools take the arguments as raw JSON and advertise the validated type's schema.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The raw arguments of a tool whose input schema is `T`'s.
pub struct Arguments<T> {
    value: Value,
    schema: PhantomData<fn() -> T>,
}

impl<T> Arguments<T> {
    /// The arguments as sent.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

impl<'de, T> Deserialize<'de> for Arguments<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            value: Value::deserialize(deserializer)?,
            schema: PhantomData,
        })
    }
}

impl<T: JsonSchema> JsonSchema for Arguments<T> {
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}
