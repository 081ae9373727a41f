from django.shortcuts import get_object_or_404, render

from .models import Product


def product_list(request):
    products = Product.objects.filter(active=True).select_related("category")[:48]
    return render(request, "demo/product_list.html", {"products": products})


def product_detail(request, pk: int):
    product = get_object_or_404(Product.objects.select_related("category"), pk=pk)
    return render(request, "demo/product_detail.html", {"product": product})


def search(request):
    q = request.GET.get("q", "").strip()
    products = Product.objects.filter(title__icontains=q)[:48] if q else []
    return render(request, "demo/search.html", {"products": products, "q": q})
