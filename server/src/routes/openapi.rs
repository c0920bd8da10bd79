//! `GET /api/openapi.json`: the API described as OpenAPI 3.1.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::AppState;

/// The paper's latent length, described when no generator is loaded.
const PAPER_FEATURE_DIM: usize = 2048;

pub async fn openapi(State(state): State<Arc<AppState>>) -> Json<Value> {
    let dim = state
        .generators
        .as_ref()
        .and_then(|g| g.serving())
        .map_or(PAPER_FEATURE_DIM, |s| s.feature_dim);
    Json(document(dim))
}

/// The document for a generator conditioned on `dim`-long latents.
pub fn document(dim: usize) -> Value {
    let error = json!({"$ref": "#/components/responses/Error"});
    let busy = json!({"$ref": "#/components/responses/Busy"});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sound2vision",
            "version": env!("CARGO_PKG_VERSION"),
            "description": format!("Images of the scene a sound describes. Send a {dim}-d audio latent (this server's model; 2048 for the paper's), receive images as server-sent events.")
        },
        "paths": {
            "/api/generate": {"post": {
                "summary": "Generate images from a latent",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GenerateRequest"}}}},
                "responses": {
                    "200": {"description": "One `image` event per image as soon as it is stored (data: {\"index\", \"url\"}), then one `done` event (data: {\"id\", \"share\"}); an `error` event if generation fails.",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "400": error, "413": error, "415": error, "429": busy, "503": busy
                }
            }},
            "/api/generations/{id}": {"get": {
                "summary": "A finished generation",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                "responses": {"200": {"description": "The generation", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Generation"}}}}, "404": error}
            }},
            "/s/{id}": {"get": {
                "summary": "The share page of a generation (HTML with og:image and og:title)",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "HTML page", "content": {"text/html": {}}}, "404": error}
            }},
            "/img/{sha256}.png": {"get": {
                "summary": "A generated image, addressed by the SHA-256 of its PNG; immutable, with an ETag",
                "parameters": [{"name": "sha256", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}],
                "responses": {"200": {"description": "PNG", "content": {"image/png": {}}}, "304": {"description": "Not modified"}, "404": error}
            }},
            "/api/encode-audio": {"post": {
                "summary": "The audio latent of an uploaded sound (WAV, FLAC, Ogg Vorbis, MP3), computed on the server",
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": {"description": "The latent", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Latent"}}}},
                              "400": error, "413": error, "415": error, "429": busy, "503": busy}
            }},
            "/api/encode-image": {"post": {
                "summary": "The image feature of an uploaded picture, to mix with a sound's latent",
                "requestBody": {"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                "responses": {"200": {"description": "The feature", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Latent"}}}},
                              "400": error, "413": error, "415": error, "429": busy, "503": busy}
            }},
            "/api/model": {"get": {
                "summary": "The model this server serves: its id and version, the latent length, the picture size, and where a page fetches the audio encoder's weights",
                "responses": {"200": {"description": "The model", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServedModel"}}}}, "503": busy}
            }},
            "/model/notice": {"get": {
                "summary": "For people: the data the served weights were trained on, each package's licence and credit, and the licence that applies to the weights (where this server knows them: the embedded default model's)",
                "responses": {"200": {"description": "An HTML page", "content": {"text/html": {}}}, "404": error, "503": busy}
            }},
            "/api/weights/audio-encoder/{version}.safetensors": {"get": {
                "summary": "The audio encoder's weights (f16 safetensors with the configuration in its metadata), immutable under their version",
                "parameters": [{"name": "version", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "The weights", "content": {"application/octet-stream": {}}}, "304": {"description": "Not modified"}, "404": error}
            }},
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "A generator worker is up"}, "503": {"description": "No worker"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}}}}
        },
        "components": {
            "schemas": {
                "GenerateRequest": {
                    "type": "object", "additionalProperties": false, "required": ["latent", "count"],
                    "properties": {
                        "latent": {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim},
                        "count": {"type": "integer", "minimum": 1, "maximum": 16},
                        "seed": {"type": "integer", "minimum": 0},
                        "truncation": {"type": "number", "minimum": 0.02},
                        "model": {"type": "string"}
                    }
                },
                "ServedModel": {
                    "type": "object", "required": ["model", "latent_length", "resolution"],
                    "properties": {
                        "model": {"type": "object", "properties": {"id": {"type": "string"}, "version": {"type": "string"}}},
                        "latent_length": {"type": "integer"},
                        "resolution": {"type": "integer"},
                        "audio_encoder": {"type": "string", "description": "Where to fetch the audio encoder's weights; absent when this server has none for this model"},
                        "data_notice": {"type": "string", "description": "Where a page for people says what the weights were trained on and under which licences; absent when this server does not know"}
                    }
                },
                "Latent": {"type": "object", "required": ["latent"], "properties": {"latent": {"type": "array", "items": {"type": "number"}, "minItems": dim, "maxItems": dim}}},
                "Generation": {
                    "type": "object", "required": ["id", "created", "model", "seed", "count", "images"],
                    "properties": {
                        "id": {"type": "string"},
                        "created": {"type": "integer", "description": "Unix seconds"},
                        "model": {"type": "object", "properties": {"id": {"type": "string"}, "version": {"type": "string"}}},
                        "seed": {"type": "integer"},
                        "count": {"type": "integer"},
                        "truncation": {"type": ["number", "null"]},
                        "images": {"type": "array", "items": {"type": "string", "description": "SHA-256 of the PNG"}}
                    }
                },
                "Error": {"type": "object", "required": ["error", "detail"], "properties": {"error": {"type": "string"}, "detail": {"type": "string"}}}
            },
            "responses": {
                "Error": {"description": "The request cannot be served", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "Busy": {"description": "Try again after `Retry-After` seconds",
                         "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        }
    })
}
