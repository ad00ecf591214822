"""A hello-world function for Nimbus's python runtime. Invoke it with {"name": "you"},
or call its URL with ?name=you."""


def handler(event, context):
    event = event or {}
    query = event.get("queryStringParameters") or {}
    name = event.get("name") or query.get("name") or "world"
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!"}
