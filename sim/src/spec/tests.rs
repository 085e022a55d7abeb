//! The validator on small documents of its own, and on the vendored ones.

use super::*;
use serde_json::json;

fn rec(method: &str, path: &str, query: Option<&str>, content_type: Option<&str>, body: &[u8]) -> Recorded {
    Recorded {
        method: method.into(),
        path: path.into(),
        query: query.map(str::to_string),
        headers: content_type.map(|c| vec![("content-type".to_string(), c.to_string())]).unwrap_or_default(),
        body: body.to_vec(),
    }
}

fn json_rec(method: &str, path: &str, query: Option<&str>, body: serde_json::Value) -> Recorded {
    rec(method, path, query, Some("application/json"), &serde_json::to_vec(&body).unwrap())
}

/// All that is wrong with `r` against `spec` (the path's own violations included).
fn request_errors(spec: &Spec, r: &Recorded) -> Vec<String> {
    match spec.find(&r.method, &r.path) {
        Ok(op) => spec.check_request(op, r, &r.path),
        Err(v) => vec![v.message],
    }
}

fn response_errors(spec: &Spec, method: &str, path: &str, status: u16, body: serde_json::Value) -> Vec<String> {
    let op = spec.find(method, path).unwrap();
    spec.check_response(op, status, Some("application/json"), &serde_json::to_vec(&body).unwrap())
}

const OAS30: &str = r##"openapi: 3.0.0
paths:
  /things:
    get:
      parameters:
        - name: state
          in: query
          schema:
            type: array
            items:
              type: string
              enum: [running, paused]
          style: form
          explode: false
        - name: limit
          in: query
          schema:
            type: integer
            format: int32
            minimum: 1
            maximum: 100
        - name: meta
          in: query
          style: deepObject
          schema:
            type: object
            additionalProperties:
              type: string
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: array
                items:
                  $ref: '#/components/schemas/Thing'
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/NewThing'
      responses:
        '201':
          description: created
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Thing'
        '400':
          description: bad
          content:
            application/json:
              schema:
                $ref: '#/components/schemas/Error'
  /things/{id}:
    parameters:
      - name: id
        in: path
        required: true
        schema:
          type: string
    delete:
      responses:
        '204':
          description: gone
  /things/special:
    get:
      responses:
        '200':
          description: ok
  /things/{id}/tags:
    put:
      parameters:
        - name: id
          in: path
          required: true
          schema:
            type: integer
      requestBody:
        content:
          multipart/form-data:
            schema:
              type: object
              required: [file]
              properties:
                file:
                  type: string
                  format: binary
      responses:
        '200':
          description: ok
components:
  schemas:
    Error:
      required: [code, message]
      properties:
        code:
          type: integer
        message:
          type: string
    NewThing:
      type: object
      required: [name]
      additionalProperties: false
      properties:
        name:
          type: string
          minLength: 1
        size:
          type: integer
          format: int32
        kind:
          $ref: '#/components/schemas/Kind'
        note:
          type: string
          nullable: true
        at:
          type: string
          format: date-time
    Kind:
      type: string
      enum: [small, large]
    Thing:
      allOf:
        - $ref: '#/components/schemas/Base'
        - type: object
          required: [state]
          properties:
            state:
              type: string
            token:
              type: string
    Base:
      type: object
      required: [id]
      properties:
        id:
          type: string
        mcp:
          type: object
          nullable: true
          additionalProperties: {}
"##;

fn oas30() -> &'static Spec {
    static S: OnceLock<Spec> = OnceLock::new();
    S.get_or_init(|| Spec::load("test/oas30.yml", OAS30))
}

#[test]
fn a_required_property_is_named_with_its_schema_and_line() {
    let errs = request_errors(oas30(), &json_rec("POST", "/things", None, json!({ "size": 1 })));
    assert_eq!(errs, vec!["body.name is required by NewThing (sim/specs/test/oas30.yml:106)".to_string()]);
}

#[test]
fn types_nullable_enums_formats_and_closed_objects() {
    let body = json!({ "name": "", "size": 3_000_000_000u64, "kind": "huge", "note": null, "at": "yesterday", "extra": 1 });
    let errs = request_errors(oas30(), &json_rec("POST", "/things", None, body)).join("\n");
    assert!(errs.contains("body.name is 0 characters, fewer than minLength 1"), "{errs}");
    assert!(errs.contains("body.size = 3000000000 is out of the int32 range"), "{errs}");
    assert!(errs.contains("body.kind = \"huge\" is not one of [\"small\", \"large\"] (Kind, sim/specs/test/oas30.yml:"), "{errs}");
    assert!(errs.contains("body.at = \"yesterday\" is not a valid date-time"), "{errs}");
    assert!(errs.contains("body.extra is not a property of NewThing (additionalProperties: false)"), "{errs}");
    assert!(!errs.contains("body.note"), "nullable: {errs}");
    let errs = request_errors(oas30(), &json_rec("POST", "/things", None, json!({ "name": 7 })));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("body.name must be string, not integer 7 (NewThing, sim/specs/test/oas30.yml:"), "{errs:?}");
}

#[test]
fn undeclared_request_properties_are_notes_not_violations() {
    let r = json_rec("POST", "/x", None, json!({ "ttl": 1, "ttlSeconds": 5 }));
    let spec = Spec::load("test/oas31.json", OAS31);
    let op = spec.find("POST", "/x").unwrap();
    let (errors, notes) = spec.check_request_with_notes(op, &r, "/x");
    assert_eq!(errors, Vec::<String>::new());
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("body.ttlSeconds is not a property Req declares"), "{notes:?}");
}

#[test]
fn a_body_must_be_there_when_required_and_of_an_accepted_type() {
    let errs = request_errors(oas30(), &rec("POST", "/things", None, None, b""));
    assert_eq!(errs, vec!["a request body is required (sim/specs/test/oas30.yml:40)".to_string()]);
    let errs = request_errors(oas30(), &rec("POST", "/things", None, Some("text/plain"), b"name"));
    assert!(errs[0].starts_with("the body is text/plain, not one of [application/json]"), "{errs:?}");
    let errs = request_errors(oas30(), &rec("POST", "/things", None, Some("application/json"), b"{"));
    assert!(errs[0].starts_with("the body is not JSON"), "{errs:?}");
    let part = b"--b\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--b--\r\n";
    let errs = request_errors(oas30(), &rec("PUT", "/things/7/tags", None, Some("multipart/form-data; boundary=b"), part));
    assert!(errs[0].starts_with("multipart part `file` is required"), "{errs:?}");
}

#[test]
fn paths_prefer_literal_segments_and_name_what_is_missing() {
    assert_eq!(oas30().find("GET", "/things/special").unwrap().template, "/things/special");
    assert_eq!(oas30().find("DELETE", "/things/abc").unwrap().template, "/things/{id}");
    let v = oas30().find("PATCH", "/things").unwrap_err();
    assert_eq!(v.status, 405);
    assert!(v.message.contains("/things has no PATCH in the spec, only GET, POST"), "{}", v.message);
    let v = oas30().find("GET", "/nothing/here").unwrap_err();
    assert_eq!(v.status, 404);
    let errs = request_errors(oas30(), &rec("PUT", "/things/seven/tags", None, None, b""));
    assert!(errs[0].starts_with("path.id must be integer, not string \"seven\""), "{errs:?}");
}

#[test]
fn query_parameters_are_typed_and_arrays_split_as_the_spec_says() {
    assert!(request_errors(oas30(), &rec("GET", "/things", Some("state=running,paused&limit=5&meta[a]=b"), None, b"")).is_empty());
    let errs = request_errors(oas30(), &rec("GET", "/things", Some("state=running,stopped&limit=500"), None, b"")).join("\n");
    assert!(errs.contains("query.state[1] = \"stopped\" is not one of [\"running\", \"paused\"]"), "{errs}");
    assert!(errs.contains("query.limit = 500 is above the maximum 100"), "{errs}");
    let errs = request_errors(oas30(), &rec("GET", "/things", Some("limit=ten"), None, b""));
    assert!(errs[0].starts_with("query.limit must be integer, not string \"ten\""), "{errs:?}");
}

#[test]
fn answers_are_checked_strictly() {
    let ok = json!({ "id": "t1", "state": "running", "mcp": null });
    assert_eq!(response_errors(oas30(), "POST", "/things", 201, ok), Vec::<String>::new());
    let errs = response_errors(oas30(), "POST", "/things", 201, json!({ "id": "t1", "invented": true })).join("\n");
    assert!(errs.contains("body.state is required by Thing"), "allOf parts are all applied: {errs}");
    assert!(errs.contains("body.invented is not a property Thing declares"), "{errs}");
    let errs = response_errors(oas30(), "POST", "/things", 201, json!({ "id": "t1", "state": "x", "token": null }));
    assert!(errs[0].starts_with("body.token must be string, not null"), "{errs:?}");
    let errs = response_errors(oas30(), "POST", "/things", 409, json!({ "code": 409, "message": "no" }));
    assert!(errs[0].starts_with("status 409 is not documented (only 201, 400)"), "{errs:?}");
    let op = oas30().find("POST", "/things").unwrap();
    let errs = oas30().check_response(op, 400, Some("text/plain"), b"bad");
    assert!(errs[0].starts_with("answers 400 with text/plain, but the spec's 400 is [application/json]"), "{errs:?}");
    let errs = oas30().check_response(op, 201, None, b"");
    assert!(errs[0].starts_with("answers 201 with no body"), "{errs:?}");
    let op = oas30().find("DELETE", "/things/x").unwrap();
    assert!(oas30().check_response(op, 204, Some("text/plain"), b"").is_empty());
    let errs = oas30().check_response(op, 204, Some("application/json"), b"{}");
    assert!(errs[0].starts_with("answers 204 with a body, but the spec's 204 has none"), "{errs:?}");
}

const OAS31: &str = r##"{"openapi":"3.1.0","paths":{"/x":{"post":{"requestBody":{"content":{"application/json":{"schema":{"anyOf":[{"$ref":"#/components/schemas/Req"},{"type":"null"}]}}}},"responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"$ref":"#/components/schemas/Req"}}}}}}}},"components":{"schemas":{"Req":{"type":"object","required":["ttl"],"properties":{"ttl":{"anyOf":[{"type":"integer"},{"type":"null"}]},"mode":{"type":["string","null"],"enum":["a","b",null]},"object":{"type":"string","const":"req"},"name":{"type":"string","pattern":"^[a-z]+$"}}}}}}"##;

#[test]
fn openapi_3_1_type_arrays_null_branches_const_and_patterns() {
    let spec = Spec::load("test/oas31.json", OAS31);
    assert!(request_errors(&spec, &json_rec("POST", "/x", None, json!({ "ttl": null, "mode": null }))).is_empty());
    assert!(request_errors(&spec, &json_rec("POST", "/x", None, json!(null))).is_empty(), "the body may be null");
    let errs = request_errors(&spec, &json_rec("POST", "/x", None, json!({ "ttl": "1" }))).join("\n");
    assert!(errs.starts_with("body.ttl matches none of anyOf: [0] body.ttl must be integer, not string \"1\""), "{errs}");
    assert!(errs.contains("[1] body.ttl must be null, not string"), "{errs}");
    assert!(
        errs.contains("sim/specs/test/oas31.json#/components/schemas/Req/properties/ttl/anyOf"),
        "one-line JSON cites pointers: {errs}"
    );
    let errs = request_errors(&spec, &json_rec("POST", "/x", None, json!({ "ttl": 1, "mode": "c" }))).join("\n");
    assert!(errs.starts_with("body.mode = \"c\" is not one of [\"a\", \"b\", null]"), "only the branch of the body's type speaks: {errs}");
    let errs = request_errors(&spec, &json_rec("POST", "/x", None, json!({ "ttl": 1, "object": "other", "name": "A_1" }))).join("\n");
    assert!(errs.contains("body.object = \"other\" must be \"req\""), "{errs}");
    assert!(errs.contains("body.name = \"A_1\" does not match pattern ^[a-z]+$"), "{errs}");
}

const SWAGGER2: &str = r##"{
  "swagger": "2.0",
  "paths": {
    "/files/upload": {
      "post": {
        "consumes": ["multipart/form-data"],
        "parameters": [
          {"name": "path", "in": "query", "required": true, "type": "string"},
          {"name": "file", "in": "formData", "required": true, "type": "file"}
        ],
        "responses": {"200": {"description": "ok", "schema": {"$ref": "#/definitions/Uploaded"}}}
      }
    },
    "/session": {
      "post": {
        "consumes": ["application/json"],
        "parameters": [{"name": "request", "in": "body", "required": true, "schema": {"$ref": "#/definitions/CreateSession"}}],
        "responses": {"201": {"description": "made"}}
      }
    }
  },
  "definitions": {
    "CreateSession": {"type": "object", "required": ["sessionId"], "properties": {"sessionId": {"type": "string"}}},
    "Uploaded": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
  }
}
"##;

#[test]
fn swagger_2_body_and_form_parameters() {
    let spec = Spec::load("test/swagger2.json", SWAGGER2);
    let errs = request_errors(&spec, &json_rec("POST", "/session", None, json!({})));
    assert_eq!(errs, vec!["body.sessionId is required by CreateSession (sim/specs/test/swagger2.json:23)".to_string()]);
    let errs = request_errors(&spec, &rec("POST", "/session", None, None, b""));
    assert!(errs[0].starts_with("a request body is required"), "{errs:?}");
    let errs = request_errors(&spec, &rec("POST", "/files/upload", None, Some("application/octet-stream"), b"data")).join("\n");
    assert!(errs.contains("query parameter `path` is required"), "{errs}");
    assert!(errs.contains("the body is application/octet-stream, not one of [multipart/form-data]"), "{errs}");
    let errs = response_errors(&spec, "POST", "/files/upload", 200, json!({}));
    assert!(errs[0].starts_with("body.name is required by Uploaded"), "{errs:?}");
    let op = spec.find("POST", "/session").unwrap();
    assert!(spec.check_response(op, 201, Some("text/plain"), b"").is_empty());
}

#[test]
fn every_vendored_document_loads_with_its_operations() {
    for (spec, at_least) in [
        (e2b_api(), 60),
        (e2b_envd(), 10),
        (morph_api(), 25),
        (daytona_api(), 100),
        (daytona_toolbox(), 80),
        (crate::spec::vercel_api(), 12),
    ] {
        assert!(spec.ops().len() >= at_least, "{}: {} operations", spec.file, spec.ops().len());
    }
    assert_eq!(morph_api().cite("/components/schemas/ExecRequest"), "sim/specs/morph/morph-3.1.0.json#/components/schemas/ExecRequest");
}

#[test]
fn the_vendored_e2b_spec_words_a_create_without_template() {
    let errs = request_errors(e2b_api(), &json_rec("POST", "/sandboxes", None, json!({ "timeout": 5 })));
    assert_eq!(errs.len(), 1, "{errs:?}");
    let line = e2b_api().text.lines().position(|l| l == "    NewSandbox:").unwrap() + 1;
    assert_eq!(errs[0], format!("body.templateID is required by NewSandbox (sim/specs/e2b/openapi.yml:{})", line + 1));
}

#[test]
fn an_ndjson_answer_is_checked_line_by_line_and_may_be_empty() {
    let spec = crate::spec::vercel_api();
    let op = spec.find("GET", "/v1/sandboxes/sbx_1/cmd/cmd_1/logs").unwrap();
    let ndjson = Some("application/x-ndjson");
    // A command that printed nothing has no log lines.
    assert_eq!(spec.check_response(op, 200, ndjson, b""), Vec::<String>::new());
    let two = b"{\"stream\":\"stdout\",\"data\":\"hi\\n\"}\n{\"stream\":\"stderr\",\"data\":\"oops\"}\n";
    assert_eq!(spec.check_response(op, 200, ndjson, two), Vec::<String>::new());
    let errs =
        spec.check_response(op, 200, ndjson, b"{\"stream\":\"stdout\",\"data\":\"a\"}\n{\"stream\":\"stdin\",\"data\":\"b\"}\n").join("\n");
    assert!(errs.contains("line 2"), "the bad line is named: {errs}");
    let errs = spec.check_response(op, 200, ndjson, b"not json\n").join("\n");
    assert!(errs.contains("line 1 that is not JSON"), "{errs}");
}
