//! Every stored contract reads, and the checker finds each kind of mistake a template can make.

use serde_json::json;

use super::*;

fn schnell() -> &'static Contract {
    replicate("black-forest-labs/flux-schnell").expect("flux-schnell is stored")
}

fn kinds(found: &[Violation]) -> Vec<(&str, &str)> {
    found.iter().map(|v| (v.field.as_str(), v.kind)).collect()
}

#[test]
fn every_stored_contract_parses_and_says_where_it_came_from() {
    assert_eq!(all().len(), FILES.len(), "a stored contract did not parse");
    for contract in all() {
        assert!(!contract.source.is_empty(), "{}", contract.model);
        assert_eq!(contract.retrieved.len(), 10, "{}", contract.model);
        assert!(contract.price.usd > 0.0, "{}", contract.model);
        assert!(
            contract.input.get("properties").is_some(),
            "{}",
            contract.model
        );
    }
}

#[test]
fn a_pinned_reference_finds_only_its_own_version() {
    let pinned = "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb";
    assert!(replicate(pinned).is_some());
    assert!(replicate("meta/musicgen:0000").is_none());
    assert!(
        replicate("meta/musicgen").is_none(),
        "musicgen is not official"
    );
    assert!(replicate("black-forest-labs/flux-schnell:abc").is_none());
    assert!(openai("gpt-image-2", "images/generations").is_some());
    assert!(
        openai("gpt-image-1", "images/generations").is_none(),
        "shut down"
    );
}

#[test]
fn a_valid_input_passes() {
    let input = json!({ "prompt": "a fox", "aspect_ratio": "16:9", "seed": 7,
                        "output_format": "png" });
    assert_eq!(schnell().check_input(&input, "input"), Vec::new());
}

#[test]
fn unknown_fields_wrong_types_and_values_outside_the_enum_are_named() {
    let input = json!({ "prompt": "a fox", "aspect_ratio": "7:5", "seed": "7",
                        "output_format": "png", "colour": "red" });
    assert_eq!(
        kinds(&schnell().check_input(&input, "input")),
        vec![
            ("input.aspect_ratio", "enum"),
            ("input.colour", "additional_property"),
            ("input.seed", "invalid_type"),
        ]
    );
}

#[test]
fn missing_required_fields_and_numbers_out_of_range_are_named() {
    let input = json!({ "num_outputs": 9 });
    let found = schnell().check_input(&input, "input");
    assert_eq!(
        kinds(&found),
        vec![
            ("input.prompt", "required"),
            ("input.num_outputs", "number_lte")
        ]
    );
    assert_eq!(
        found[1].to_string(),
        "input.num_outputs: Must be less than or equal to 4"
    );
}

#[test]
fn file_inputs_must_be_urls_or_well_formed_data_uris() {
    let rembg =
        replicate("cjwbw/rembg:fb8af171cfa1616ddcf1242c093f9c46bcada5ad4cf6f2fbe8b81b330ec5c003")
            .expect("rembg");
    for good in [
        "https://example.com/a.png",
        "data:image/png;base64,iVBORw0KGgo=",
    ] {
        assert!(
            rembg
                .check_input(&json!({ "image": good }), "input")
                .is_empty(),
            "{good}"
        );
    }
    for bad in [
        "photo.png",
        "data:image/png;base64,not base64!",
        "data:;base64,AAAA",
        "data:image/png;base64,A=AA",
    ] {
        assert_eq!(
            kinds(&rembg.check_input(&json!({ "image": bad }), "input")),
            vec![("input.image", "format")],
            "{bad}"
        );
    }
}

#[test]
fn form_fields_are_read_as_the_schemas_type() {
    let edits = openai("gpt-image-2", "images/edits").expect("edits");
    let mut fields = Map::new();
    fields.insert("model".into(), json!("gpt-image-2"));
    fields.insert("prompt".into(), json!("a portrait"));
    fields.insert("n".into(), json!("1"));
    assert!(edits.check_form(&fields).is_empty());
    fields.insert("n".into(), json!("one"));
    fields.insert("quality".into(), json!("ultra"));
    assert_eq!(
        kinds(&edits.check_form(&fields)),
        vec![("n", "invalid_type"), ("quality", "enum")]
    );
}

#[test]
fn outputs_are_checked_against_their_published_shape() {
    assert!(schnell().output_is_list());
    let url = "https://replicate.delivery/x/out.png";
    assert!(schnell().check_output(&json!([url])).is_empty());
    assert_eq!(
        kinds(&schnell().check_output(&json!(url))),
        vec![("output", "invalid_type")]
    );
    let pro = replicate("black-forest-labs/flux-1.1-pro").expect("pro");
    assert!(!pro.output_is_list());
    assert!(pro.check_output(&json!(url)).is_empty());
}

#[test]
fn choices_and_ranges_are_read_from_the_schema() {
    let pro = replicate("black-forest-labs/flux-1.1-pro").expect("pro");
    let ratios = pro.choices("aspect_ratio").expect("listed");
    assert!(ratios.contains(&&json!("16:9")));
    assert!(
        !ratios.contains(&&json!("21:9")),
        "flux-1.1-pro has no 21:9"
    );
    let seedance = replicate("bytedance/seedance-1-lite").expect("seedance");
    assert_eq!(seedance.range("duration"), (Some(2.0), Some(12.0)));
}
