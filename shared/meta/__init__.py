"""The API about the API: health and the OpenAPI document, which gather every capability."""
