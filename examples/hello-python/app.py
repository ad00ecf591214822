"""A hello-world function for Nimbus's python runtime."""


def handler(event, context):
    name = (event or {}).get("name", "world")
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!"}
