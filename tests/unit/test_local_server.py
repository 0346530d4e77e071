"""The local API Gateway stand-in builds REST v1 proxy events as API Gateway does for each kind of route."""

from __future__ import annotations

from engagement.local.server import proxy_event


def test_a_webhook_event_has_its_path_as_resource_and_no_parameters():
    event = proxy_event("POST", "/webhooks/github", {"Host": ["h"]}, b"{}", "10.0.0.1", "h")
    assert event["resource"] == event["path"] == event["requestContext"]["resourcePath"] == "/webhooks/github"
    assert event["pathParameters"] is None and event["queryStringParameters"] is None
    assert event["body"] == "{}" and event["isBase64Encoded"] is False


def test_an_admin_event_has_the_greedy_resource_a_decoded_proxy_parameter_and_its_query():
    event = proxy_event("GET", "/admin/members/discourse%3Aforum.example.com%2F31?format=json", {}, b"", "::1", "h")
    assert event["resource"] == event["requestContext"]["resourcePath"] == "/admin/{proxy+}"
    # API Gateway leaves `path` encoded and decodes the path parameter.
    assert event["path"] == "/admin/members/discourse%3Aforum.example.com%2F31"
    assert event["pathParameters"] == {"proxy": "members/discourse:forum.example.com/31"}
    assert event["queryStringParameters"] == {"format": "json"}
    assert event["multiValueQueryStringParameters"] == {"format": ["json"]}
    assert event["httpMethod"] == event["requestContext"]["httpMethod"] == "GET" and event["body"] is None


def test_a_binary_body_is_base64_encoded():
    event = proxy_event("POST", "/events", {}, b"\xff\xfe", "::1", "h")
    assert event["isBase64Encoded"] is True and event["body"] == "//4="
